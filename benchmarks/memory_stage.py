"""The ILP's lexicographic memory stage: memory saved, objective given up and solve time, by slack.

For each slack (None: no stage; 0: ties only; 2%; 5%) it solves seeded synthetic problems
(``scheduler.synthetic``, 6 tasks x 6 positions x 6 options x 4 processors, budget twice the
blocks' need) and prints, against the single-stage solve, the median resident memory saved, the
median "slo" objective given up and the median solve-time ratio (wall: measured; memory and
objective: modelled from the problem). It then simulates ``sparseloom`` on shipped cells with each
slack: violations and peak memory (modelled).

    python benchmarks/memory_stage.py --instances 10 --cells quickstart:jetson_orin_agx
"""

from __future__ import annotations

import argparse
import statistics
import time

from cells import load_cell

from scheduler.ilp import SolverConfig, solve
from scheduler.planner import MEMORY_SLACK
from scheduler.policies.sparseloom import SparseLoomPolicy
from scheduler.routes import objective_value, resident_memory_mb
from scheduler.synthetic import random_problem
from sparseloom.sim import compare_workload

SLACKS: tuple[float | None, ...] = (None, 0.0, MEMORY_SLACK, 0.05)


def label(slack: float | None) -> str:
    return "no stage" if slack is None else f"slack {slack:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--cells", nargs="*", default=["quickstart:jetson_orin_agx", "quickstart:intel_core_ultra"],
                    metavar="SCENARIO:SOC")
    args = ap.parse_args()
    rows: dict[float | None, list[tuple[float, float, float]]] = {s: [] for s in SLACKS}
    for seed in range(args.instances):
        problem = random_problem(seed, 6, 6, 6, 4, memory_tightness=2.0)
        base: tuple[float, float, float] | None = None
        for slack in SLACKS:
            t0 = time.perf_counter()
            sol = solve(problem, "slo", SolverConfig(), memory_slack=slack)
            wall = time.perf_counter() - t0
            if not sol.found:
                break
            mem = resident_memory_mb(problem, [d for r in sol.routes.values() for d in r.digests])
            obj = objective_value(problem, sol.routes, "slo")
            if base is None:
                base = (mem, obj, wall)
            rows[slack].append((1 - mem / base[0], obj / base[1] - 1, wall / base[2]))
    print(f"synthetic 6x6x6x4, {args.instances} instances, medians against the single-stage solve:")
    print(f"{'stage':<12}{'memory saved':>14}{'objective given up':>20}{'solve time x':>14}")
    for slack, r in rows.items():
        if r:
            saved, given, ratio = (statistics.median(x[i] for x in r) for i in range(3))
            print(f"{label(slack):<12}{100 * saved:>13.1f}%{100 * given:>19.2f}%{ratio:>14.2f}")
    for cell in args.cells:
        workload, assembled, path = load_cell(cell)
        policies = []
        for slack in SLACKS:
            p = SparseLoomPolicy(memory_slack=slack)
            p.name = f"sparseloom ({label(slack)})"
            policies.append(p)
        cmp = compare_workload(workload, assembled.problem, policies, base_dir=path.parent, progress=False)
        print(f"\n{cell}: SLO violations % and peak memory MB (modelled)")
        for name, s in cmp.policies.items():
            print(f"  {name:<28} {100 * s.slo_violation_rate.mean:6.2f}%  {s.peak_memory_mb.mean:7.1f} MB")


if __name__ == "__main__":
    main()
