"""How per-processor queues are served, for every policy (modelled): earliest deadline first or FIFO,
with or without dropping requests that can no longer finish in time.

Every per-processor-queue policy (``sparseloom`` and the SV/AV baselines) runs with each queue
order (``scheduler.policy.Order``) and each ``drop_late`` setting on the same arrivals and seeds, on
each (scenario, SoC); the table gives the SLO violation rate with its 95% bootstrap interval.
``band-lsf`` (Band's own global, slack-ordered queue) is printed once as the reference. The
setting with the lowest mean over policies and cells is every shipped policy's default
(``PolicyBase.order``, ``drop_late``). All figures are modelled: simulated from profiles fitted to
the SoC files' published results (or measured, for ``host``).

    python benchmarks/queue_order.py --cells quickstart:jetson_orin_agx stress:snapdragon_8gen2
"""

from __future__ import annotations

import argparse
from typing import get_args

import numpy as np
from cells import add_scenario_arguments, header, load_cell

from scheduler import registry
from scheduler.policy import Order, Policy
from sparseloom.sim import compare_workload

SETTINGS: tuple[tuple[str, bool], ...] = tuple((o, d) for o in get_args(Order) for d in (True, False))


def label(order: str, drop: bool) -> str:
    return f"{order}{' +drop' if drop else ''}"


def policies(order: str, drop: bool) -> list[Policy]:
    out = []
    for name in registry.names():
        p = registry.create(name)
        if p.queue != "processor":
            continue
        p.order = order  # type: ignore[assignment]
        p.drop_late = drop
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", metavar="SCENARIO:SOC",
                    default=["quickstart:jetson_orin_agx", "quickstart:snapdragon_8gen2", "quickstart:intel_core_ultra",
                             "stress:snapdragon_8gen2", "quickstart:host"])
    add_scenario_arguments(ap)
    args = ap.parse_args()
    means: dict[str, list[float]] = {label(*c): [] for c in SETTINGS}
    for cell in args.cells:
        workload, assembled, path = load_cell(cell, seeds=args.seeds, duration_s=args.duration)
        print(header(cell, workload, "SLO violations % (modelled) [95% CI]"))
        print(f"{'policy':<12}" + "".join(f"{label(*c):>22}" for c in SETTINGS))
        rows: dict[str, list[str]] = {}
        for order, drop in SETTINGS:
            cmp = compare_workload(workload, assembled.problem, policies(order, drop), base_dir=path.parent,
                                   progress=False)
            for name, s in cmp.policies.items():
                e = s.slo_violation_rate
                rows.setdefault(name, []).append(f"{100 * e.mean:6.2f} [{100 * e.low:.2f}-{100 * e.high:.2f}]")
                means[label(order, drop)].append(e.mean)
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
