"""``sparseloom sweep WORKLOAD``: the policy comparison across load, SLO scale or memory budget."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from sparseloom.commands import common
from sparseloom.errors import InputError, Complaint

AXES = {
    "load": "arrival rate (x the workload's)",
    "slo": "latency SLO (x the workload's)",
    "memory": "memory budget (fraction of all blocks' bytes)",
    "error": "true block latency (x the profile every policy plans on)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="compare policies across load, SLO scale or memory budget",
                       description="Each point re-plans and re-simulates every policy on the same arrivals; "
                                   "points run in parallel processes. Writes sweep.json and sweep.png.")
    common.add_workload_args(p)
    p.add_argument("--axis", choices=tuple(AXES), default="load")
    p.add_argument("--values", default="0.5,1,2,4", help="comma-separated values along the axis")
    p.add_argument("--block-error-cv", type=float, default=0.0, metavar="CV",
                   help="also give each block a seeded lognormal error of this coefficient of variation "
                        "(the truth; policies plan on the profile)")
    p.add_argument("--policies", nargs="+", metavar="NAME", help="default: the scenario's")
    p.add_argument("--seeds", type=int, metavar="N", help="override the scenario's number of seeds")
    p.add_argument("--duration", type=float, metavar="S", help="override the scenario's duration")
    p.add_argument("--workers", type=int, metavar="N", help="processes (default: CPUs)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default out/<scenario>-sweep-<axis>)")
    p.add_argument("--json", action="store_true", help="print sweep.json to stdout")
    common.add_engine_args(p)
    p.set_defaults(run=run)


def _values(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise InputError([Complaint("--values", "comma-separated positive numbers, e.g. 0.5,1,2", text)])
    return values


def run(args: argparse.Namespace) -> int:
    from scheduler import registry

    values = _values(args.values)
    where = common.engine(args)
    if not 0.0 <= args.block_error_cv <= 10.0:
        raise InputError([Complaint("--block-error-cv", "a coefficient of variation in [0, 10]", str(args.block_error_cv))])
    workload, soc = common.load(args)
    scenario = workload.scenario
    assert scenario is not None
    names = tuple(args.policies or scenario.policies)
    unknown = [n for n in names if n not in registry.names()]
    if unknown:
        raise InputError([Complaint("--policies", f"names from: {', '.join(registry.names())}", ", ".join(unknown))])
    assembled = common.assemble(args, (workload, soc))

    from sparseloom.sim import Experiment, ProfileError, SweepPoint, arrival_specs, run_sweep
    from sparseloom.sim.plots import plot_sweep
    from sparseloom.verdict import measure_served
    from stitching.atomic import write_json

    policies = [registry.create(n) for n in names]
    # Accuracy judged on measurement: every variant the policies' plans for the workload as given
    # may serve is measured first (a point's re-plan may pick others; those fall back to estimates).
    problem, _ = measure_served(assembled, {p.name: p.plan(assembled.problem) for p in policies},
                                common.cache_dir(args), progress=not args.no_progress)
    total_mb = sum({o.digest: o.memory_mb for t in problem.tasks for pos in t.positions for o in pos}.values())
    points = [SweepPoint(rate_scale=v) if args.axis == "load" else SweepPoint(slo_scale=v) if args.axis == "slo"
              else SweepPoint(error_scale=v) if args.axis == "error"
              else SweepPoint(memory_budget_mb=v * total_mb) for v in values]
    experiment = Experiment.of_workload(workload, Path(args.workload).parent)
    experiment = replace(experiment, duration_s=args.duration or scenario.duration_s, seeds=args.seeds or scenario.seeds,
                         profile_error=ProfileError(block_cv=args.block_error_cv, seed=scenario.seed))
    results = run_sweep(problem, policies, arrival_specs(workload.tasks), points, experiment,
                        workers=args.workers, progress=not args.no_progress, engine=where)
    out = args.out or Path("out") / f"{scenario.name}-sweep-{args.axis}"
    record = {
        "workload": args.workload, "soc": assembled.soc.name, "axis": args.axis, "axis_meaning": AXES[args.axis],
        "total_block_mb": total_mb, "numbers": "modelled by the simulator from the profile",
        "points": [{"value": v, "policies": {n: {"slo_violation_rate": c.policies[n].slo_violation_rate.mean,
                                                 "throughput_rps": c.policies[n].throughput_rps.mean,
                                                 "latency_p99_ms": c.policies[n].latency_p99_ms.mean,
                                                 "peak_memory_mb": c.policies[n].peak_memory_mb.mean}
                                             for n in names}}
                   for v, (_, c) in zip(values, results, strict=True)],
    }
    write_json(out / "sweep.json", record)
    plot_sweep([(v, c) for v, (_, c) in zip(values, results, strict=True)], out / "sweep.png",
               axis_label=AXES[args.axis])
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"{scenario.name} on {assembled.soc.name}: sweep over {AXES[args.axis]} (violations %, throughput rps)")
    print(f"{'policy':<12}" + "".join(f"{v:>16g}" for v in values))
    for n in names:
        cells = "".join(f"{100 * p['policies'][n]['slo_violation_rate']:>8.1f}/{p['policies'][n]['throughput_rps']:<7.1f}"
                        for p in record["points"])
        print(f"{n:<12}{cells}")
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0
