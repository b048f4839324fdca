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
    return simulate.run(argparse.Namespace(
        workload=str(DEFAULT), soc=None, cache=args.cache, no_progress=False, policies=None, out=args.out,
        seeds=None, duration=None, trace_s=simulate.TRACE_S, json=False))
