"""``sparseloom demo``: the main job on the built-in default scenario, end to end.

Pool, profile, accuracy, plan and simulate ``workloads/scenarios/quickstart.yaml``
under every policy, then print the comparison and write results, plots and traces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparseloom.commands import simulate

DEFAULT = Path(__file__).resolve().parents[2] / "workloads" / "scenarios" / "quickstart.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the built-in default scenario",
                       description=f"Same as 'sparseloom simulate {DEFAULT.relative_to(DEFAULT.parents[2])} "
                                   "--out out/demo'.")
    p.add_argument("--out", type=Path, default=Path("out") / "demo", metavar="DIR", help="output folder")
    p.add_argument("--cache", type=Path, metavar="DIR", help="pools, profiles, compiled blocks")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Parsed by simulate's own parser, so every simulate flag (present or future) has its default.
    parser = argparse.ArgumentParser(prog="sparseloom")
    simulate.register(parser.add_subparsers())
    ns = parser.parse_args(["simulate", str(DEFAULT)])
    ns.out, ns.cache = args.out, args.cache
    return simulate.run(ns)
