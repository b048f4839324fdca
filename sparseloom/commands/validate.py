"""``sparseloom validate FILE...``: check workload and SoC files, one located line per problem."""

from __future__ import annotations

import argparse
import json
import sys

from sparseloom.errors import InputError, Complaint
from sparseloom.workload import load_workload


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check workload and SoC YAML files",
        description="Check workload and SoC YAML files. Exit 0 when all are valid, 2 otherwise.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files to check")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def check(files: list[str]) -> tuple[list[str], list[Complaint]]:
    """Validate each file; return the valid ones and every problem found."""
    ok: list[str] = []
    problems: list[Complaint] = []
    for name in files:
        try:
            load_workload(name)
            ok.append(name)
        except InputError as err:
            problems.extend(err.complaints)
    return ok, problems


def run(args: argparse.Namespace) -> int:
    ok, problems = check(args.files)
    if args.json:
        print(
            json.dumps(
                {"valid": ok, "problems": [p.__dict__ for p in problems]}, indent=2
            )
        )
    else:
        for name in ok:
            print(f"{name}: ok")
        for problem in problems:
            print(problem, file=sys.stderr)
    return 2 if problems else 0
