"""Pick each adaptive policy's per-request dispatch rule by one measurement (modelled by the simulator).

Every adaptive policy (``sparseloom``, ``av-np``, ``av-p``) offers the same rules
(``scheduler.dispatch.RULES``: "place", "plan", "accuracy"). This runs each policy with each
rule on the same arrivals and seeds, on each (scenario, SoC), and prints the SLO violation rate
with its 95% bootstrap interval; the rule with the lowest mean violation rate over the cells is
each policy's default (recorded in its module docstring). All figures are modelled: the
profiles are roofline models fitted to the SoC files' published results.

    python benchmarks/dispatch_rules.py --cells quickstart:jetson_orin_agx stress:snapdragon_8gen2
"""

from __future__ import annotations

import argparse

import numpy as np
from cells import add_scenario_arguments, header, load_cell

from scheduler.dispatch import RULES
from scheduler.policies.adaptive_variant import AdaptiveVariantPolicy
from scheduler.policies.sparseloom import SparseLoomPolicy
from scheduler.policy import Policy
from sparseloom.sim import compare_workload


def policies(rule: str) -> list[Policy]:
    return [SparseLoomPolicy(dispatch=rule), AdaptiveVariantPolicy("av-np", False, dispatch=rule),
            AdaptiveVariantPolicy("av-p", True, dispatch=rule)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["quickstart:jetson_orin_agx", "stress:snapdragon_8gen2"],
                    metavar="SCENARIO:SOC")
    add_scenario_arguments(ap)
    args = ap.parse_args()
    means: dict[tuple[str, str], list[float]] = {}
    for cell in args.cells:
        workload, assembled, path = load_cell(cell, seeds=args.seeds, duration_s=args.duration)
        print(header(cell, workload, "SLO violations % (modelled) [95% CI], variant switches per run"))
        print(f"{'policy':<12}" + "".join(f"{r:>30}" for r in RULES))
        rows: dict[str, list[str]] = {}
        for rule in RULES:
            cmp = compare_workload(workload, assembled.problem, policies(rule), base_dir=path.parent, progress=False)
            for name, s in cmp.policies.items():
                e = s.slo_violation_rate
                rows.setdefault(name, []).append(f"{100 * e.mean:6.2f} [{100 * e.low:.2f}-{100 * e.high:.2f}] "
                                                 f"sw {s.variant_switches.mean:4.0f}")
                means.setdefault((name, rule), []).append(e.mean)
        for name, cells in rows.items():
            print(f"{name:<12}" + "".join(f"{c:>30}" for c in cells))
    print("\nmean over cells (the rule with the lowest is the policy's default):")
    for name in ("sparseloom", "av-np", "av-p"):
        scores = {rule: float(np.mean(means[(name, rule)])) for rule in RULES}
        best = min(scores, key=lambda r: scores[r])
        print(f"  {name:<12} " + "  ".join(f"{r} {100 * v:.2f}%" for r, v in scores.items()) + f"  -> {best}")


if __name__ == "__main__":
    main()
