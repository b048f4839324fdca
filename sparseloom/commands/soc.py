"""``sparseloom soc measure``: write a measured SoC file for this host."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from sparseloom import hostsoc
from sparseloom.errors import InputError, Complaint
from sparseloom.workload import load_workload
from stitching.atomic import write_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soc", help="SoC descriptions: measure this host")
    inner = p.add_subparsers(dest="soc_command", metavar="ACTION", required=True)
    m = inner.add_parser(
        "measure", help="measure this machine's CPU and write an SoC file"
    )
    m.add_argument("--out", required=True, type=Path, help="YAML file to write")
    m.add_argument("--quick", action="store_true", help="small sizes: fast but noisier")
    m.set_defaults(run=run_measure)


def run_measure(args: argparse.Namespace) -> int:
    out: Path = args.out
    if not out.parent.is_dir():
        raise InputError(
            [Complaint("--out", "a path in an existing directory", str(out))]
        )
    result = hostsoc.measure(
        out.parent,
        quick=args.quick,
        progress=lambda s: print(f"measuring {s}", file=sys.stderr),
    )
    write_text(out, hostsoc.to_yaml(result, datetime.date.today().isoformat()))
    load_workload(out)  # what we write must be valid
    print(f"wrote {out}")
    return 0
