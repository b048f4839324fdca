"""Cost-aware admission (``scheduler.admission``) on and off, for every per-processor policy, and its
one constant, the live-rate window, along the axis it trades (modelled).

Every per-processor-queue policy (``sparseloom`` and the SV/AV baselines) runs with ``admission``
on and off on the same arrivals and seeds, on each (scenario, SoC); the table gives the SLO
violation rate with its 95% bootstrap interval and the share shed at arrival. ``band-lsf`` (Band's
own queue and rules, no admission) is printed once as the reference. Then ``sparseloom`` runs with
RATE_WINDOW at a quarter, the default and four times it: a short window is noisy, a long one lags a
burst. All figures are modelled: simulated from profiles fitted to the SoC files' published
results (or measured, for ``host``).

    python benchmarks/admission.py --cells stress:host quickstart:jetson_orin_agx --seeds 2
"""

from __future__ import annotations

import argparse

import numpy as np
from cells import add_scenario_arguments, header, load_cell

from scheduler import admission, registry
from scheduler.policy import Policy
from sparseloom.sim import compare_workload

CELLS = ["quickstart:jetson_orin_agx", "quickstart:snapdragon_8gen2", "quickstart:intel_core_ultra", "quickstart:host",
         "stress:jetson_orin_agx", "stress:snapdragon_8gen2", "stress:intel_core_ultra", "stress:host"]


def policies(admit: bool) -> list[Policy]:
    out = []
    for name in registry.names():
        p = registry.create(name)
        if p.queue != "processor":
            continue
        p.admission = admit
        out.append(p)
    return out


def cell_rate(e: object) -> str:
    return f"{100 * e.mean:6.2f} [{100 * e.low:.2f}-{100 * e.high:.2f}]"  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", metavar="SCENARIO:SOC", default=CELLS)
    ap.add_argument("--no-window", action="store_true", help="skip the RATE_WINDOW axis")
    add_scenario_arguments(ap)
    args = ap.parse_args()
    means: dict[str, list[float]] = {"admission": [], "none": []}
    default = admission.RATE_WINDOW
    windows = () if args.no_window else (max(2, default // 4), default, 4 * default)
    window_means: dict[int, list[float]] = {w: [] for w in windows}
    for cell in args.cells:
        workload, assembled, path = load_cell(cell, seeds=args.seeds, duration_s=args.duration)
        print(header(cell, workload, "SLO violations % (modelled) [95% CI], shed %"))
        print(f"{'policy':<12}{'admission':>30}{'none':>22}")
        rows: dict[str, list[str]] = {}
        for admit in (True, False):
            cmp = compare_workload(workload, assembled.problem, policies(admit), base_dir=path.parent, progress=False)
            for name, s in cmp.policies.items():
                shed = f" shed {100 * s.shed_rate.mean:5.2f}" if admit else ""
                rows.setdefault(name, []).append(cell_rate(s.slo_violation_rate) + shed)
                means["admission" if admit else "none"].append(s.slo_violation_rate.mean)
        ref = compare_workload(workload, assembled.problem, [registry.create("band-lsf")], base_dir=path.parent,
                               progress=False).policies["band-lsf"].slo_violation_rate
        for name, row in rows.items():
            print(f"{name:<12}{row[0]:>30}{row[1]:>22}")
        print(f"{'band-lsf':<12}{cell_rate(ref):>30} (its own global queue)")
        if windows:
            line = []
            for w in windows:
                admission.RATE_WINDOW = w
                try:
                    cmp = compare_workload(workload, assembled.problem, [registry.create("sparseloom")],
                                           base_dir=path.parent, progress=False)
                finally:
                    admission.RATE_WINDOW = default
                e = cmp.policies["sparseloom"].slo_violation_rate
                window_means[w].append(e.mean)
                line.append(f"window {w}: {cell_rate(e)}")
            print("sparseloom  " + "  ".join(line))
    print("\nmean over policies and cells: " + "  ".join(f"{k} {100 * float(np.mean(v)):.2f}%" for k, v in means.items()))
    if windows:
        print("sparseloom, mean over cells: " + "  ".join(
            f"window {w} {100 * float(np.mean(v)):.2f}%" for w, v in window_means.items()))


if __name__ == "__main__":
    main()
