"""Scheduler benchmark: ILP solve time vs size (HiGHS vs CBC), online decision time, online-vs-ILP gap.

All instances are seeded synthetic problems (scheduler.synthetic: modelled numbers); all times are
measured on this machine with time.perf_counter. Run:
    PYTHONPATH=. python benchmarks/scheduler_bench.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from scheduler import registry
from scheduler.ilp import SolverConfig, solve
from scheduler.plan import Plan
from scheduler.policies.sparseloom import SparseLoomPolicy
from scheduler.problem import Problem
from scheduler.routes import check, objective_value
from scheduler.synthetic import random_problem

# Instance knobs for the solve-time table: SLOs 2x the fastest dense latency, budget = all blocks.
SLO_TIGHTNESS = 2.0
MEMORY_TIGHTNESS = 1.0
SIZES = [(2, 2, 2, 2), (4, 4, 4, 2), (4, 4, 6, 4), (8, 4, 8, 4), (8, 8, 10, 4)]


def instance(seed: int, size: tuple[int, int, int, int]) -> Problem:
    tasks, positions, variants, processors = size
    return random_problem(
        seed,
        tasks,
        positions,
        variants,
        processors,
        slo_tightness=SLO_TIGHTNESS,
        memory_tightness=MEMORY_TIGHTNESS,
    )


@dataclass
class Queues:
    backlog: dict[str, float]
    now_ms: float = 0.0
    memo: dict[str, object] = field(default_factory=dict)

    def backlog_ms(self, processor: str) -> float:
        return self.backlog[processor]

    def is_resident(self, digest: str) -> bool:
        return True


def binaries(problem: Problem) -> int:
    names = {k.name for k in problem.processors}
    return sum(
        len([k for k in o.latency_ms if k in names])
        for t in problem.tasks
        for pos in t.positions
        for o in pos
    )


def bench_solve(repeats: int, time_limit_s: float) -> list[dict[str, object]]:
    rows = []
    jobs = [
        (s, b, o)
        for s in SIZES
        for b in ("highs", "cbc")
        for o in ("slo", "throughput", "memory")
    ]
    for size, backend, objective in tqdm(jobs, desc="ILP solves", file=sys.stderr):
        walls, statuses, gaps = [], [], []
        reps = repeats if objective != "throughput" else 1
        for seed in range(reps):
            problem = instance(seed, size)
            sol = solve(
                problem,
                objective,
                SolverConfig(backend, time_limit_s=time_limit_s, gap_rel=1e-4),
            )
            walls.append(sol.info.wall_s)
            statuses.append(sol.info.status)
            gaps.append(sol.info.gap)
        rows.append(
            {
                "size": "x".join(map(str, size)),
                "binaries": binaries(instance(0, size)),
                "backend": backend,
                "objective": objective,
                "median_wall_s": statistics.median(walls),
                "max_wall_s": max(walls),
                "statuses": statuses,
                "max_gap": max((g for g in gaps if g is not None), default=None),
                "source": "measured",
            }
        )
    return rows


def bench_decide(decisions: int) -> list[dict[str, object]]:
    problem = random_problem(0, *SIZES[-1], memory_tightness=1.5)
    rows = []
    rng = random.Random(0)
    states = [
        Queues({k.name: rng.expovariate(1 / 3.0) for k in problem.processors})
        for _ in range(256)
    ]
    tasks = [t.name for t in problem.tasks]
    for name in tqdm(registry.names(), desc="decide timing", file=sys.stderr):
        policy = registry.create(name)
        plan = policy.plan(problem)
        times = []
        for i in range(decisions):
            state = states[i % len(states)]
            task = tasks[i % len(tasks)]
            t0 = time.perf_counter_ns()
            policy.decide(task, plan, state)
            times.append(time.perf_counter_ns() - t0)
        times.sort()
        rows.append(
            {
                "policy": name,
                "alternatives_per_task": statistics.mean(
                    len(plan.alternatives.get(t, ())) for t in tasks
                ),
                "p50_us": times[len(times) // 2] / 1e3,
                "p99_us": times[int(len(times) * 0.99)] / 1e3,
                "source": "measured",
            }
        )
    return rows


def _gap(a: float, b: float) -> float:
    return (a - b) / abs(b) if b else 0.0


def bench_gap(instances: int) -> dict[str, object]:
    """The online paths against the ILP on the same instances.

    - switch: after a change (latency SLOs x0.8, or memory budget x0.8), the immediate switch among
      precomputed Pareto routes vs a full ILP re-plan: feasible share and objective gap;
    - dispatch: the routes per-request dispatch picks on idle queues (most accurate in time) vs the
      ILP plan's routes: objective gap (latency spent on accuracy, by design) and accuracy gained.
    """
    policy = SparseLoomPolicy(gap_rel=1e-6)
    out: dict[str, list[float]] = {
        "switch_slo_gap": [],
        "switch_mem_gap": [],
        "dispatch_gap": [],
        "dispatch_acc_gain": [],
    }
    feasible = {"switch_slo": [0, 0], "switch_mem": [0, 0]}
    for seed in tqdm(range(instances), desc="online vs ILP", file=sys.stderr):
        problem = random_problem(
            seed, 6, 6, 6, 4, slo_tightness=2.0, memory_tightness=1.2
        )
        plan = policy.plan(problem)
        if not plan.feasible:
            continue
        idle = Queues({k.name: 0.0 for k in problem.processors})
        chosen = {t.name: policy.decide(t.name, plan, idle) for t in problem.tasks}
        ilp_obj = objective_value(problem, plan.routes, "slo")
        out["dispatch_gap"].append(
            _gap(objective_value(problem, chosen, "slo"), ilp_obj)
        )
        out["dispatch_acc_gain"].append(
            statistics.mean(
                (chosen[n].accuracy or 0) - (plan.routes[n].accuracy or 0)
                for n in chosen
            )
        )
        changes = {
            "switch_slo": replace(
                problem,
                tasks=tuple(
                    replace(t, latency_slo_ms=t.latency_slo_ms * 0.8)
                    for t in problem.tasks
                ),
            ),
            "switch_mem": replace(
                problem, memory_budget_mb=problem.memory_budget_mb * 0.8
            ),
        }
        for key, changed in changes.items():
            replanned = policy.replan(changed, plan)
            if not replanned.feasible:
                continue
            feasible[key][1] += 1
            switched: Plan = policy.switch(plan, changed)
            if switched.feasible and check(changed, switched.routes).ok(
                changed.memory_budget_mb
            ):
                feasible[key][0] += 1
                out[f"{key}_gap"].append(
                    _gap(
                        objective_value(changed, switched.routes, "slo"),
                        objective_value(changed, replanned.routes, "slo"),
                    )
                )
    summary: dict[str, object] = {
        "source": "measured (objective: modelled, see scheduler.routes.objective_value)"
    }
    for k, v in out.items():
        summary[k] = {
            "n": len(v),
            "median": statistics.median(v) if v else None,
            "max": max(v) if v else None,
        }
    for k, (ok, n) in feasible.items():
        summary[f"{k}_feasible"] = f"{ok}/{n}"
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and instances")
    ap.add_argument("--out", help="write all results as JSON here")
    ap.add_argument(
        "--parts",
        default="solve,decide,gap",
        help="comma-separated subset of solve,decide,gap",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    solve_rows = (
        bench_solve(1 if args.quick else 3, time_limit_s=10.0)
        if "solve" in parts
        else []
    )
    if solve_rows:
        print(
            "ILP solve time (median over seeds; wall includes model build; time limit 10 s, gap 1e-4)"
        )
    if solve_rows:
        print(
            f"{'size TxPxVxK':>13} {'binaries':>8} {'backend':>7} {'objective':>10} {'median_s':>9} {'max_s':>7} {'max_gap':>8}  statuses"
        )
    for r in solve_rows:
        g = r["max_gap"]
        print(
            f"{r['size']:>13} {r['binaries']:>8} {r['backend']:>7} {r['objective']:>10} {r['median_wall_s']:>9.3f} "
            f"{r['max_wall_s']:>7.3f} {('-' if g is None else f'{g:.2e}'):>8}  {','.join(map(str, r['statuses']))}"  # type: ignore[call-overload]
        )
    decide_rows = (
        bench_decide(4000 if args.quick else 20000) if "decide" in parts else []
    )
    if decide_rows:
        print("\nOnline decision time per request (8x8x10x4 instance, random backlogs)")
    for r in decide_rows:
        print(
            f"{r['policy']:>10}: p50 {r['p50_us']:.1f} us, p99 {r['p99_us']:.1f} us, alternatives/task {r['alternatives_per_task']:.1f}"
        )
    gap = bench_gap(5 if args.quick else 15) if "gap" in parts else {}
    if gap:
        print("\nOnline policy vs ILP (relative objective gap; 6x6x6x4 instances)")
    for k, v in gap.items():
        print(f"  {k}: {v}")
    if args.out:
        d = os.path.dirname(os.path.abspath(args.out))
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {"solve": solve_rows, "decide": decide_rows, "gap": gap}, fh, indent=2
            )
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
