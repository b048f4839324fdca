"""The one exception type the public API raises for bad input, and its parts.

Every problem carries where it was found (file, line, key path), what was
expected and what was found, so the CLI can print one located line per problem
and a Python caller can inspect the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Complaint:
    """One located complaint about user input."""

    path: str
    expected: str
    found: str = ""
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        key = self.path or "(document)"
        text = f"{where}: {key}: expected {self.expected}"
        if self.found:
            text += f", found {self.found}"
        return text


class InputError(ValueError):
    """Bad input: a workload file, a CLI flag or an API argument.

    ``complaints`` lists every located complaint; ``str(err)`` is one line each.
    The CLI maps this exception to exit status 2.
    """

    def __init__(self, complaints: list[Complaint] | tuple[Complaint, ...]) -> None:
        self.complaints: tuple[Complaint, ...] = tuple(complaints)
        super().__init__("\n".join(str(p) for p in self.complaints))


def bad_argument(name: str, expected: str, found: object) -> InputError:
    """An :class:`InputError` for one bad API argument."""
    return InputError([Complaint(path=name, expected=expected, found=repr(found))])
