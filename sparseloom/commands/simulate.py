"""``sparseloom simulate WORKLOAD``: compare policies on the same arrivals; table, results.json, plots, trace."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sparseloom.commands import common
from sparseloom.errors import InputError, Complaint

if TYPE_CHECKING:
    from scheduler.plan import Plan
    from scheduler.problem import Problem as SchedulerProblem

# Seconds of schedule in each Chrome trace: thousands of requests at the quickstart's rates.
TRACE_S = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a workload under several policies and compare them",
                       description="Every policy sees the same arrivals per seed. Writes DIR/results.json, "
                                   "latency_cdf.png, violations.png and a Chrome trace per policy.")
    p.add_argument("workload", metavar="WORKLOAD", nargs="?", help="workload YAML file")
    p.add_argument("--soc", type=Path, metavar="FILE", help="run on this SoC file instead of the workload's")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="pools, profiles, compiled blocks ($SPARSELOOM_CACHE or ~/.cache/sparseloom)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--policies", nargs="*", metavar="NAME",
                   help="policies to compare (default: the scenario's); with no names, list the registry")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default out/<scenario>)")
    p.add_argument("--seeds", type=int, metavar="N", help="override the scenario's number of seeds")
    p.add_argument("--duration", type=float, metavar="S", help="override the scenario's duration in seconds")
    p.add_argument("--trace-s", type=float, default=TRACE_S, metavar="S", help="seconds of schedule in the trace")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    common.add_engine_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scheduler import registry

    if args.policies is not None and not args.policies:
        for name in registry.names():
            print(name)
        return 0
    if args.workload is None:
        raise InputError([Complaint("WORKLOAD", "a workload YAML file", "nothing")])
    where = common.engine(args)
    workload, soc = common.load(args)
    assert workload.scenario is not None
    names = tuple(args.policies or workload.scenario.policies)
    unknown = [n for n in names if n not in registry.names()]
    if unknown:
        raise InputError([Complaint("--policies", f"names from: {', '.join(registry.names())}", ", ".join(unknown))])
    if args.seeds is not None and args.seeds < 1:
        raise InputError([Complaint("--seeds", "an integer >= 1", str(args.seeds))])
    if args.duration is not None and args.duration <= workload.scenario.warmup_s:
        raise InputError([Complaint("--duration", f"more than the warm-up ({workload.scenario.warmup_s:g} s)",
                                  str(args.duration))])
    changes = {k: v for k, v in (("seeds", args.seeds), ("duration_s", args.duration)) if v is not None}
    if changes:
        workload = workload.model_copy(update={"scenario": workload.scenario.model_copy(update=changes)})
    assembled = common.assemble(args, (workload, soc))
    scenario = workload.scenario
    assert scenario is not None

    from sparseloom.sim import compare_workload
    from sparseloom.sim.report import format_table, write_outputs
    from sparseloom.verdict import VerdictReport, measure_served

    policies = [registry.create(n) for n in names]
    judged: list[VerdictReport] = []

    def verdict(plans: Mapping[str, Plan]) -> SchedulerProblem:
        problem, report = measure_served(assembled, plans, common.cache_dir(args), progress=not args.no_progress)
        judged.append(report)
        return problem

    comparison = compare_workload(workload, assembled.problem, policies, base_dir=Path(args.workload).parent,
                                  trace_until_s=args.trace_s, progress=not args.no_progress, verdict=verdict,
                                  engine=where)
    out = args.out or Path("out") / scenario.name
    soc_name = assembled.soc.name
    sources = sorted({e.source for e in assembled.profile.entries})
    extra = {"latency_sources": sources,
             "accuracy": {m: {k: v for k, v in dataclasses.asdict(t).items() if k != "measured"}
                          | {"deltas": len(t.deltas), "measured": len(t.measured)}
                          for m, t in assembled.accuracy.items()},
             "accuracy_verdict": judged[-1].to_dict() if judged else {}}
    files = write_outputs(out, comparison, workload=args.workload, soc=soc_name, problem=assembled.problem,
                          extra=extra)
    if args.json:
        print(json.dumps(json.loads(files["results"].read_text()), indent=2))
    else:
        print(f"{scenario.name} on {soc_name}: {len(names)} policies, "
              f"{scenario.seeds} seed(s) x {scenario.duration_s:g} s simulated; "
              f"block latencies {'/'.join(sources)}")
        print(format_table(comparison))
        if judged and judged[-1].models:
            print(judged[-1].describe())
        for kind, path in files.items():
            print(f"  {kind}: {path}", file=sys.stderr)
    return 0
