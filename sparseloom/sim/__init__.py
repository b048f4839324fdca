"""The discrete-event simulator: policies on a modelled SoC, their metrics and reports.

``simulate`` runs one policy on one seed's arrivals; ``compare`` runs every
policy on the same arrivals over several seeds; ``max_sustainable_rate``
finds the highest load a policy sustains at <= 5% SLO violations. Metric
definitions are in :mod:`sparseloom.sim.metrics`.
"""

from sparseloom.sim.engine import SLOChangeEvent
from sparseloom.sim.metrics import Estimate, PolicySummary, RunResult, TaskMetrics
from sparseloom.sim.runner import (
    Arrivals,
    Comparison,
    SustainableRate,
    arrival_specs,
    compare,
    compare_workload,
    make_arrivals,
    max_sustainable_rate,
    scale_rates,
    simulate,
    slo_changes,
)

__all__ = [
    "Arrivals",
    "Comparison",
    "Estimate",
    "PolicySummary",
    "RunResult",
    "SLOChangeEvent",
    "SustainableRate",
    "TaskMetrics",
    "arrival_specs",
    "compare",
    "compare_workload",
    "make_arrivals",
    "max_sustainable_rate",
    "scale_rates",
    "simulate",
    "slo_changes",
]
