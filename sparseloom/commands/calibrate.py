"""``sparseloom calibrate WORKLOAD``: the same workload in the runtime and in the simulator; their error."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from sparseloom.errors import bad_argument
from stitching import zoo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="run a workload for real and in the simulator; report the simulator's error and correct the profile",
        description="Replays the workload's seeded arrivals in the runtime on this host and simulates the same "
        "arrivals with the same plan. Reports p50/p99 latency error (%%), violation-rate error (points) and "
        "throughput error (%%), before and after correcting block latencies with the runtime's measurements.",
    )
    p.add_argument("workload", type=Path, metavar="WORKLOAD", help="workload YAML file")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: the scenario's duration_s)")
    p.add_argument("--soc", type=Path, default=None, help="SoC YAML file replacing the workload's SoC")
    p.add_argument("--policy", default=None, help="policy name (default: the scenario's first policy)")
    p.add_argument("--seed", type=int, default=None, help="arrival seed (default: the scenario's)")
    p.add_argument("--cache", type=Path, default=None, help="cache directory (pools, profiles, compiled blocks)")
    p.add_argument("--write-profile", type=Path, default=None, metavar="FILE",
                   help="write the profile with the runtime's measured block latencies to FILE (JSON)")
    p.add_argument("--probe-seconds", type=float, default=None, metavar="S",
                   help="seconds of other seeds' arrivals replayed before the window and again after it, "
                   "whose requests measure the runtime's per-request cost (default: 10; fewer measure "
                   "it with fewer samples per idle gap)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sparseloom.runtime.calibration import (
        PROBE_S,
        calibrate,
        corrected_profile,
        probe_arrivals,
        summary_lines,
    )
    from sparseloom.sim.runner import arrival_specs
    from sparseloom.runtime.session import prepare

    if args.write_profile is not None and not args.write_profile.parent.is_dir():
        raise bad_argument("--write-profile", "a path in an existing directory", str(args.write_profile))
    probe_s = PROBE_S if args.probe_seconds is None else args.probe_seconds
    if not 0.0 < probe_s <= 3600.0:
        raise bad_argument("--probe-seconds", "seconds in (0, 3600]", str(args.probe_seconds))
    cache = args.cache or zoo.default_cache_dir()
    s = prepare(args.workload, soc_path=args.soc, policy=args.policy, duration_s=args.duration, seed=args.seed,
                cache_dir=cache, progress=not args.no_progress)
    cal = calibrate(s.problem, s.policy, s.soc, s.pool, s.experiment, s.arrivals, s.inputs, cache_dir=cache / "compiled",
                    probes=probe_arrivals(s.experiment, arrival_specs(s.workload.tasks), s.arrivals.seed, probe_s))
    if args.write_profile is not None:
        device = f"sparseloom runtime on {platform.node() or 'this host'} ({platform.machine()})"
        corrected_profile(s.assembled.profile, cal.corrections, device).save(args.write_profile)
        print(f"wrote {args.write_profile} ({len(cal.corrections)} measured block latencies)", file=sys.stderr)
    if args.json:
        print(json.dumps(cal.to_dict(), indent=2))
    else:
        print("\n".join(summary_lines(cal)))
    return 0
