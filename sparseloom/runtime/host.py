"""Restrict a planning problem to the processors present on this host, so its plan can run here."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from backends.processor import SoCSpec
from backends.tvm_backends import backend_for
from scheduler.problem import Problem


def processors_present(soc: SoCSpec) -> tuple[str, ...]:
    """Names of the SoC's processors this host can run blocks on."""
    return tuple(p.name for p in soc.processors if backend_for(p).present(p))


def restrict(problem: Problem, processors: Collection[str]) -> Problem:
    """``problem`` with only ``processors``: other processors and the options only they could run are dropped.

    ValueError when a task would keep no option at some position.
    """
    keep = set(processors)
    if not keep & {p.name for p in problem.processors}:
        raise ValueError(
            f"none of the problem's processors ({', '.join(p.name for p in problem.processors)}) "
            f"is present on this host ({', '.join(sorted(keep)) or 'none'})"
        )
    tasks = []
    for t in problem.tasks:
        positions = []
        for p, options in enumerate(t.positions):
            kept = tuple(
                replace(o, latency_ms={k: v for k, v in o.latency_ms.items() if k in keep})
                for o in options
                if keep & set(o.latency_ms)
            )
            if not kept:
                raise ValueError(f"task {t.name!r}: no block at position {p} can run on {', '.join(sorted(keep))}")
            positions.append(kept)
        tasks.append(replace(t, positions=tuple(positions)))
    return replace(
        problem,
        tasks=tuple(tasks),
        processors=tuple(p for p in problem.processors if p.name in keep),
    )
