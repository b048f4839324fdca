"""How plans count load, for every ILP-based policy (modelled): the queueing term or a fixed
utilisation cap, at sustained (bursty: on-state) or mean arrival rates.

Each policy plans with each ``scheduler.routes.LoadModel`` (``queueing``: "pk", the
Pollaczek-Khinchine wait linearised over utilisation levels, or "cap", utilisation <= a cap of 0.7,
0.8 or 0.9 and no wait; ``rates``: "sustained" or "mean") and runs on the same arrivals and seeds,
on each (scenario, SoC). The table gives the SLO violation rate with its 95% bootstrap interval and the
median ILP wall time per plan (measured). The combination with the lowest mean violation rate over
policies and cells is the default (``scheduler.planner.PlanSettings``). Violations are modelled:
simulated from profiles fitted to the SoC files' published results (or measured, for ``host``).

    python benchmarks/load_model.py --cells quickstart:jetson_orin_agx stress:snapdragon_8gen2
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from cells import add_scenario_arguments, header, load_cell

from scheduler import registry
from sparseloom.sim import compare_workload

# (queueing, rates, cap): the cap matters only without the queueing term.
MODELS = (("pk", "sustained", 0.8), ("pk", "mean", 0.8), ("cap", "sustained", 0.7), ("cap", "sustained", 0.8),
          ("cap", "sustained", 0.9), ("cap", "mean", 0.8))


def label(q: str, r: str, cap: float) -> str:
    return f"{q}+{r}" if q == "pk" else f"cap {cap:g}+{r}"
POLICIES = ("sparseloom", "sv-ao-p", "sv-lo-np", "av-np", "av-p", "band-lsf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", metavar="SCENARIO:SOC",
                    default=["quickstart:jetson_orin_agx", "quickstart:snapdragon_8gen2", "quickstart:intel_core_ultra",
                             "stress:snapdragon_8gen2"])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    add_scenario_arguments(ap)
    args = ap.parse_args()
    means: dict[tuple[str, str, float], list[float]] = {m: [] for m in MODELS}
    for cell in args.cells:
        workload, assembled, path = load_cell(cell, seeds=args.seeds, duration_s=args.duration)
        print(header(cell, workload, "SLO violations % (modelled) [95% CI] / plan wall s (measured)"), flush=True)
        print(f"{'policy':<12}" + "".join(f"{label(*m):>28}" for m in MODELS))
        rows: dict[str, list[str]] = {}
        for q, r, cap in MODELS:
            policies = [registry.create(n, queueing=q, rates=r, utilisation_cap=cap) for n in args.policies]
            cmp = compare_workload(workload, assembled.problem, policies, base_dir=path.parent, progress=False)
            for name, s in cmp.policies.items():
                e = s.slo_violation_rate
                wall = cmp.plan_wall_s[name]
                rows.setdefault(name, []).append(f"{100 * e.mean:6.2f} [{100 * e.low:.2f}-{100 * e.high:.2f}] {wall:5.2f}s")
                means[(q, r, cap)].append(e.mean)
        for name, row in rows.items():
            print(f"{name:<12}" + "".join(f"{c:>28}" for c in row), flush=True)
    scores = {m: float(np.mean(v)) for m, v in means.items()}
    best = min(scores, key=lambda m: scores[m])
    print("\nmean over policies and cells: " + "  ".join(f"{label(*m)} {100 * v:.2f}%" for m, v in scores.items())
          + f"  -> {label(*best)} (median of cells: "
          + ", ".join(f"{label(*m)} {100 * statistics.median(v):.2f}%" for m, v in means.items()) + ")")


if __name__ == "__main__":
    main()
