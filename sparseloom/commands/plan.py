"""``sparseloom plan WORKLOAD``: the plan a policy makes for a workload, and how it was found."""

from __future__ import annotations

import argparse
import json

from sparseloom.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="plan a workload: stitched variant and processor per block, per task",
                       description="Build (cached) pool, profile and accuracy terms, then plan with a policy. "
                                   "Exit 3 when the workload is infeasible, with the reason.")
    common.add_workload_args(p)
    p.add_argument("--policy", default="sparseloom", help="policy name (see 'sparseloom simulate --policies')")
    p.add_argument("--objective", choices=("slo", "throughput", "memory"), default="slo")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S", help="solver time limit in seconds")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scheduler import registry
    from sparseloom.errors import InputError, Complaint

    if args.policy not in registry.names():
        raise InputError([Complaint("--policy", f"one of {', '.join(registry.names())}", args.policy)])
    assembled = common.assemble(args)
    policy = registry.create(args.policy, objective=args.objective, time_limit_s=args.time_limit)
    plan = policy.plan(assembled.problem)
    if args.json:
        print(json.dumps({"workload": args.workload, "soc": assembled.soc.name, "policy": args.policy,
                          "plan": plan.to_dict()}, indent=2))
    else:
        print(plan.describe())
    return 0 if plan.feasible else 3
