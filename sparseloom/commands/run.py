"""``sparseloom run WORKLOAD``: run a workload for real on this host's processors, printing live statistics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sparseloom.core.overload import MAX_IN_FLIGHT
from sparseloom.errors import bad_argument
from stitching import zoo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a workload for real on this host (real models, real-time arrivals), with live statistics",
        description="Assemble a workload (pool, profile, plan), then replay its arrivals in real time through "
        "the runtime: one worker per processor present here, blocks loaded within the memory budget.",
    )
    p.add_argument("workload", type=Path, metavar="WORKLOAD", help="workload YAML file")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: the scenario's duration_s)")
    p.add_argument("--soc", type=Path, default=None, help="SoC YAML file replacing the workload's SoC")
    p.add_argument("--policy", default=None, help="policy name (default: the scenario's first policy)")
    p.add_argument("--seed", type=int, default=None, help="arrival seed (default: the scenario's)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between statistics prints (default 5)")
    p.add_argument("--max-in-flight", type=int, default=MAX_IN_FLIGHT, help="admission limit: requests in flight at once")
    p.add_argument("--cache", type=Path, default=None, help="cache directory (pools, profiles, compiled blocks)")
    p.add_argument("--json", action="store_true", help="print the final statistics and metrics as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scheduler import registry
    from sparseloom.runtime import Runtime, replay
    from sparseloom.runtime.session import prepare
    from sparseloom.runtime.stats import result_dict

    if args.every <= 0:
        raise bad_argument("--every", "seconds above zero", args.every)
    if args.max_in_flight < 1:
        raise bad_argument("--max-in-flight", "an integer >= 1", args.max_in_flight)
    cache = args.cache or zoo.default_cache_dir()
    s = prepare(args.workload, soc_path=args.soc, policy=args.policy, duration_s=args.duration, seed=args.seed,
                cache_dir=cache, progress=not args.no_progress)
    out = sys.stderr if args.json else sys.stdout
    policy = registry.create(s.policy)
    with Runtime(s.problem, policy, s.soc, s.pool, cache_dir=cache / "compiled",
                 max_in_flight=args.max_in_flight) as rt:
        print(rt.plan.describe(), file=out)
        rt.warm(lambda m: print(m, file=sys.stderr) if not args.no_progress else None)
        done = replay(rt, s.arrivals, s.inputs, slo_changes=s.experiment.slo_changes, every_s=args.every,
                      on_tick=lambda r: print(r.stats().describe(), file=out, flush=True), keep_futures=False)
        stats = rt.stats()
        exp = s.experiment
        result = rt.result(duration_s=exp.duration_s, warmup_s=exp.warmup_s, seed=exp.seed, origin_ms=done.start_ms)
    if args.json:
        print(json.dumps({"stats": stats.to_dict(), "result": result_dict(result, "measured")}, indent=2))
    else:
        print(stats.describe())
    return 0
