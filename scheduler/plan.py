"""What a policy produces: a route per task, alternatives for on-the-fly switching, the resident set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    """How one request of a task runs: per position, the option index and the processor."""

    task: str
    options: tuple[int, ...]
    processors: tuple[str, ...]
    # Expected service latency without queueing (blocks + transfers).
    latency_ms: float
    accuracy: float | None
    memory_mb: float


@dataclass(frozen=True)
class SolveInfo:
    """How a plan was found; every planner reports these, heuristics too."""

    solver: str
    status: str
    wall_s: float
    gap: float | None = None
    objective: float | None = None


@dataclass(frozen=True)
class Plan:
    """For each task a route, its precomputed alternatives, and the block residency."""

    routes: Mapping[str, Route]
    info: SolveInfo
    # Pareto-optimal routes per task (fastest first) to switch among without re-planning.
    alternatives: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)
    # Block digests kept resident, and those to pre-load (in order) when memory allows.
    resident: frozenset[str] = frozenset()
    preload: tuple[str, ...] = ()
    # Empty when feasible; otherwise one sentence per violated constraint.
    explanation: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        return not self.explanation
