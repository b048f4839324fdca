"""What a policy plans over: tasks, the blocks each position may run, processors and budgets.

Everything here is plain numbers, built by the sparseloom layer from the pool
and backend profiles. Latencies are per (block, processor); a missing
processor key means the block cannot run there. A stitched variant picks one
block per position: a route's ``options`` are those blocks' indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    """One block as the scheduler sees it: the sub-graph of one variant at one position, in numbers."""

    variant: str
    digest: str
    memory_mb: float
    latency_ms: Mapping[str, float]
    # Accuracy term relative to the task's base accuracy (usually <= 0); see TaskSpec.accuracy_floor.
    accuracy_delta: float = 0.0
    latency_source: str = "modelled"


@dataclass(frozen=True)
class TaskSpec:
    """A task as the scheduler sees it."""

    name: str
    model: str
    latency_slo_ms: float
    min_accuracy: float
    rate_hz: float
    positions: tuple[tuple[Block, ...], ...]
    # Activation size leaving each position (MB); drives transfer cost on a processor change.
    output_mb: tuple[float, ...]
    # Accuracy of the dense model; None when unknown (profiling-only models).
    base_accuracy: float | None = None
    # None: option terms are accuracy points and add up. A number (chance level):
    # terms are log retained fractions of the accuracy above it, so they still add up,
    # and accuracy = floor + (base - floor) * exp(sum). Either way constraints stay linear.
    accuracy_floor: float | None = None
    # Measured accuracy of stitched variants (option index per position -> accuracy) on the model's
    # evaluation data. Where a variant is measured, the verdict uses the measurement, not the estimate.
    measured_accuracy: Mapping[tuple[int, ...], float] = field(default_factory=dict)
    # The rate the task brings for stretches long against its SLO (a bursty task's on-state rate):
    # what a processor must keep up with. None: the mean rate.
    sustained_rate_hz: float | None = None

    @property
    def load_rate_hz(self) -> float:
        """The rate planned utilisation counts: the sustained rate where there is one, else the mean."""
        return self.rate_hz if self.sustained_rate_hz is None else self.sustained_rate_hz

    def accuracy_of(self, score: float) -> float | None:
        """The accuracy a sum of option terms stands for."""
        if self.base_accuracy is None:
            return None
        if self.accuracy_floor is None:
            return self.base_accuracy + score
        return self.accuracy_floor + (self.base_accuracy - self.accuracy_floor) * math.exp(score)

    @property
    def min_score(self) -> float:
        """The smallest sum of option terms that meets ``min_accuracy`` (-inf when any does)."""
        if self.base_accuracy is None:
            return -math.inf
        if self.accuracy_floor is None:
            return self.min_accuracy - self.base_accuracy
        span = self.base_accuracy - self.accuracy_floor
        need = self.min_accuracy - self.accuracy_floor
        if need <= 0:
            return -math.inf
        return math.log(need / span) if span > 0 else math.inf

    def accuracy(self, choice: tuple[int, ...]) -> float | None:
        """Measured accuracy where the variant was measured, else the estimate from the option terms."""
        measured = self.measured_accuracy.get(tuple(choice))
        if measured is not None:
            return measured
        return self.estimated_accuracy(choice)

    def estimated_accuracy(self, choice: tuple[int, ...]) -> float | None:
        """The estimator's accuracy for the variant: the sum of its options' terms."""
        return self.accuracy_of(sum(self.positions[p][i].accuracy_delta for p, i in enumerate(choice)))


@dataclass(frozen=True)
class ProcessorInfo:
    name: str
    kind: str
    # The most of its time any plan may keep it busy: the ceiling of the queueing term's levels
    # (scheduler.routes.UTILISATION_LEVELS, where the Pollaczek-Khinchine wait is 16 mean residual
    # services). The plain model caps lower (scheduler.routes.LoadModel.cap).
    max_utilisation: float = 0.9375


@dataclass(frozen=True)
class Problem:
    """A whole planning instance."""

    tasks: tuple[TaskSpec, ...]
    processors: tuple[ProcessorInfo, ...]
    memory_budget_mb: float
    transfer_latency_ms: float = 0.0
    transfer_mb_per_ms: float = float("inf")
    storage_mb_per_ms: float = float("inf")
    # Task-to-task transition counts for multi-task switching (src -> dst -> count).
    transitions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def transfer_ms(self, mb: float) -> float:
        return self.transfer_latency_ms + mb / self.transfer_mb_per_ms
