"""``sparseloom demo``: the main job on the built-in default workload.

Until the simulator lands this validates every shipped workload file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparseloom.commands import validate

WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the built-in default workload")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    files = sorted(str(p) for p in WORKLOADS.rglob("*.yaml"))
    return validate.run(argparse.Namespace(files=files, json=False))
