"""What a policy produces: a route per task, alternatives for on-the-fly switching, the resident set."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Route:
    """How one request of a task runs: its stitched variant (per position, the index of its block
    among the position's blocks: ``options``) and the processor of each block."""

    task: str
    options: tuple[int, ...]
    processors: tuple[str, ...]
    # Expected service latency without queueing (blocks + transfers).
    latency_ms: float
    accuracy: float | None
    memory_mb: float
    # Per position: the block's variant and digest, and its block latency plus the
    # transfer to the next position when that runs elsewhere (sums to latency_ms).
    variants: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    step_latency_ms: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        blocks = [
            {
                "position": p,
                "option": o,
                "variant": self.variants[p] if self.variants else None,
                "digest": self.digests[p] if self.digests else None,
                "processor": self.processors[p],
                "step_latency_ms": self.step_latency_ms[p]
                if self.step_latency_ms
                else None,
            }
            for p, o in enumerate(self.options)
        ]
        return {
            "task": self.task,
            "blocks": blocks,
            "latency_ms": self.latency_ms,
            "accuracy": self.accuracy,
            "memory_mb": self.memory_mb,
            "source": "modelled",
        }


@dataclass(frozen=True)
class SolveInfo:
    """How a plan was found; every planner reports these, heuristics too."""

    solver: str
    status: str
    wall_s: float
    gap: float | None = None
    objective: float | None = None
    # Name of the objective optimised ("slo", "throughput", "memory") when there is one.
    objective_name: str | None = None
    # Solver work: variables plus simplex iterations plus branch-and-bound nodes (HiGHS; 0 for CBC
    # and heuristics).
    # Deterministic for one thread, unlike the wall time, so a simulated re-plan can be charged by it.
    work: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "status": self.status,
            "wall_s": self.wall_s,
            "gap": self.gap,
            "objective": self.objective,
            "objective_name": self.objective_name,
            "work": self.work,
        }


@dataclass(frozen=True)
class Diagnosis:
    """One reason a problem is infeasible, with the best value achievable for it."""

    # The task concerned; None for a constraint that couples tasks (memory, utilisation).
    task: str | None
    constraint: (
        str  # "latency" | "accuracy" | "memory" | "utilisation" | "placement" | "joint"
    )
    required: float | None
    achievable: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "constraint": self.constraint,
            "required": self.required,
            "achievable": self.achievable,
            "message": self.message,
        }


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
    # Structured form of ``explanation`` (same order).
    diagnoses: tuple[Diagnosis, ...] = ()
    # The policy that made the plan.
    policy: str = ""
    # Latency SLO per task, so per-request decisions need nothing but the plan and the queues.
    slo_ms: Mapping[str, float] = field(default_factory=dict)
    # For placement at request time (Band's per-block schedulers, and the "place" and "hold"
    # dispatch rules of the others): per task, per position of the planned route, the block's
    # latency on each processor that can run it, and the transfer cost after the position when
    # the next one runs elsewhere.
    block_latency_ms: Mapping[str, tuple[Mapping[str, float], ...]] = field(
        default_factory=dict
    )
    block_transfer_ms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return not self.explanation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: per task the blocks, processors and expected numbers, and solve info."""
        return {
            "policy": self.policy,
            "feasible": self.feasible,
            "solve": self.info.to_dict(),
            "tasks": {
                name: {
                    **route.to_dict(),
                    "alternatives": len(self.alternatives.get(name, ())),
                }
                for name, route in self.routes.items()
            },
            "resident": sorted(self.resident),
            "preload": list(self.preload),
            "explanation": list(self.explanation),
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(_finite(self.to_dict()), indent=indent)

    def describe(self) -> str:
        """Human-readable summary, one block per task."""
        i = self.info
        gap = "n/a" if i.gap is None else f"{i.gap:.2%}"
        head = (
            f"plan by {self.policy or '?'}: solver {i.solver}, status {i.status}, "
            f"wall {i.wall_s * 1e3:.1f} ms, gap {gap}, objective {i.objective_name}={i.objective}"
        )
        lines = [head]
        for name, r in self.routes.items():
            acc = "n/a" if r.accuracy is None else f"{r.accuracy:.4f}"
            lines.append(
                f"  {name}: latency {r.latency_ms:.3f} ms, accuracy {acc}, memory {r.memory_mb:.1f} MB (modelled)"
            )
            for p, proc in enumerate(r.processors):
                var = r.variants[p] if r.variants else str(r.options[p])
                dig = r.digests[p][:12] if r.digests else "?"
                lines.append(f"    block {p}: {var} [{dig}] on {proc}")
        for sentence in self.explanation:
            lines.append(f"  infeasible: {sentence}")
        return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no infinity; write non-finite numbers as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
