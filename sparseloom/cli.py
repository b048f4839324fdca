"""The ``sparseloom`` command line: one argparse tree, one module per subcommand.

Exit codes: 0 ok, 1 internal error, 2 bad input, 3 infeasible workload.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import NoReturn

from sparseloom.commands import COMMANDS
from sparseloom.errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INFEASIBLE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2 on bad flags already; keep its message one line.
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sparseloom", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def _warning_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our warnings are for users (a bad cache entry rebuilt): one line, not the warning's source line.
    warnings.formatwarning = _warning_line
    try:
        return int(args.run(args) or EXIT_OK)
    except InputError as err:
        for problem in err.complaints:
            print(problem, file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours; silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as err:
        if err.errno not in _STORAGE_ERRORS:
            return _internal()
        # Writes are atomic (a temporary file, then a rename), so nothing half-written is left behind.
        where = f" {err.filename}" if err.filename else ""
        print(f"sparseloom: cannot write{where}: {_STORAGE_ERRORS[err.errno]}. Nothing was half-written and "
              "no existing file was changed; free some space, or point --cache / $SPARSELOOM_CACHE at a "
              "writable directory.", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception:  # noqa: BLE001 - the last line of defence: say it is ours, not the user's
        return _internal()


_STORAGE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (a read-only directory?)",
    errno.EPERM: "operation not permitted",
}


def _internal() -> int:
    print("sparseloom: internal error (please report it):", file=sys.stderr)
    traceback.print_exc()
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
