"""The discrete-event simulator: policies on a modelled SoC, their metrics and reports.

``simulate`` runs one policy on one seed's arrivals; ``compare`` runs every
policy on the same arrivals over the seeds of an ``Experiment`` (the settings
every comparison, search and sweep takes whole); ``max_sustainable_rate``
finds the highest load a policy sustains at <= 5% SLO violations;
``min_memory_budget`` the least memory it needs for the same;
``run_sweep`` compares policies over load, SLO-scale and memory points in
parallel processes. Each takes an ``Engine``: a local process pool (the default) or Ray
(:mod:`sparseloom.sim.cluster`). Metric definitions are in :mod:`sparseloom.core.metrics`;
the writers of the table, results.json, plots and trace are in
:mod:`sparseloom.sim.report`.
"""

from sparseloom.core.slo import SLOChangeEvent
from sparseloom.core.metrics import Estimate, PolicySummary, RunResult, TaskMetrics
from sparseloom.sim.parallel import ENGINES, Engine
from sparseloom.sim.experiment import Experiment, ProfileError, slo_changes
from sparseloom.sim.runner import (
    Arrivals,
    Comparison,
    arrival_specs,
    compare,
    compare_workload,
    make_arrivals,
    scale_rates,
    simulate,
    unavoidable_rate,
)
from sparseloom.sim.search import MinimalBudget, SustainableRate, max_sustainable_rate, min_memory_budget
from sparseloom.sim.sweep import SweepPoint, apply_point, at_point, run_sweep
from sparseloom.sim.wake import Wake, WakeCurve

__all__ = [
    "ENGINES",
    "Arrivals",
    "Comparison",
    "Engine",
    "Estimate",
    "Experiment",
    "MinimalBudget",
    "PolicySummary",
    "ProfileError",
    "RunResult",
    "SLOChangeEvent",
    "SustainableRate",
    "SweepPoint",
    "TaskMetrics",
    "Wake",
    "WakeCurve",
    "apply_point",
    "arrival_specs",
    "at_point",
    "compare",
    "compare_workload",
    "make_arrivals",
    "max_sustainable_rate",
    "min_memory_budget",
    "run_sweep",
    "scale_rates",
    "simulate",
    "slo_changes",
    "unavoidable_rate",
]
