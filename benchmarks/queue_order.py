"""How per-processor queues are served: earliest deadline first against FIFO, for every policy (modelled).

Every per-processor-queue policy (``sparseloom`` and the SV/AV baselines) runs with each queue
order (``scheduler.policy.Order``) on the same arrivals and seeds, on each (scenario, SoC); the
table gives the SLO violation rate with its 95% bootstrap interval. ``band-lsf`` (Band's own
global, slack-ordered queue) is printed once as the reference. The order with the lower mean over
policies and cells is the default for every policy (``PolicyBase.order``). All figures are
modelled: simulated from profiles fitted to the SoC files' published results.

    python benchmarks/queue_order.py --cells quickstart:jetson_orin_agx stress:snapdragon_8gen2
"""

from __future__ import annotations

import argparse
from typing import get_args

import numpy as np
from cells import load_cell

from scheduler import registry
from scheduler.policy import Order, Policy
from sparseloom.sim import compare_workload

ORDERS: tuple[str, ...] = get_args(Order)


def policies(order: str) -> list[Policy]:
    out = []
    for name in registry.names():
        p = registry.create(name)
        if p.queue != "processor":
            continue
        p.order = order  # type: ignore[assignment]
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", metavar="SCENARIO:SOC",
                    default=["quickstart:jetson_orin_agx", "quickstart:snapdragon_8gen2", "stress:snapdragon_8gen2"])
    ap.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the scenario's)")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")
    args = ap.parse_args()
    means: dict[str, list[float]] = {o: [] for o in ORDERS}
    for cell in args.cells:
        workload, assembled, path = load_cell(cell, seeds=args.seeds, duration_s=args.duration)
        assert workload.scenario is not None
        print(f"\n{cell} ({workload.scenario.seeds} seeds x {workload.scenario.duration_s:g} s), "
              "SLO violations % (modelled) [95% CI]")
        print(f"{'policy':<12}" + "".join(f"{o:>22}" for o in ORDERS))
        rows: dict[str, list[str]] = {}
        for order in ORDERS:
            cmp = compare_workload(workload, assembled.problem, policies(order), base_dir=path.parent, progress=False)
            for name, s in cmp.policies.items():
                e = s.slo_violation_rate
                rows.setdefault(name, []).append(f"{100 * e.mean:6.2f} [{100 * e.low:.2f}-{100 * e.high:.2f}]")
                means[order].append(e.mean)
        ref = compare_workload(workload, assembled.problem, [registry.create("band-lsf")], base_dir=path.parent,
                               progress=False).policies["band-lsf"].slo_violation_rate
        for name, row in rows.items():
            print(f"{name:<12}" + "".join(f"{c:>22}" for c in row))
        print(f"{'band-lsf':<12}{100 * ref.mean:>6.2f} [{100 * ref.low:.2f}-{100 * ref.high:.2f}] (its own global queue)")
    scores = {o: float(np.mean(v)) for o, v in means.items()}
    print("\nmean over policies and cells: " + "  ".join(f"{o} {100 * v:.2f}%" for o, v in scores.items())
          + f"  -> {min(scores, key=lambda o: scores[o])}")


if __name__ == "__main__":
    main()
