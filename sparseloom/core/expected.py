"""What a plan expects of a request, block by block: one rule for the simulator and the runtime.

Both drivers queue, shed and drop requests by what the plan expects, never by what the host (or the
simulated truth) will do:

- a block is expected to take the route's own figure (``Route.step_latency_ms`` less the transfer
  after it: a closed-loop policy's re-plan carries latencies corrected by what it observed), or its
  profiled latency where the route carries none (a user's policy may build bare routes);
- a processor's backlog counts the blocks it runs or has queued, at those figures; a transfer
  between processors occupies neither (it delays the next block's readiness);
- a request about to start block ``i`` has ``left_ms[i]`` of expected work left: its blocks from
  ``i`` on and the transfers between them (the late-drop rule, :func:`sparseloom.core.dispatch.late`);
- a global-queue (Band) block placed on a processor at request time takes its profiled latency
  there, plus the move from the processor of the block before it (:func:`placed_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.plan import Route
from scheduler.problem import Problem, TaskSpec


@dataclass(frozen=True)
class Expected:
    """Per position of a route: the block's expected run, the transfer before it, the work left from it."""

    block_ms: tuple[float, ...]
    transfer_ms: tuple[float, ...]
    left_ms: tuple[float, ...]


def expected(problem: Problem, route: Route) -> Expected:
    """The expected figures of ``route`` (a route of one of ``problem``'s tasks, already checked)."""
    task = problem.task(route.task)
    procs = route.processors
    n = len(procs)
    moves = tuple(_move_ms(problem, task, i, procs[i - 1] if i > 0 else None, procs[i]) for i in range(n))
    if route.step_latency_ms:
        blocks = tuple(route.step_latency_ms[i] - (moves[i + 1] if i + 1 < n else 0.0) for i in range(n))
    else:
        blocks = tuple(float(task.positions[i][o].latency_ms[procs[i]]) for i, o in enumerate(route.options))
    left: list[float] = []
    after = 0.0
    for i in reversed(range(n)):
        after += blocks[i]
        left.append(after)
        after += moves[i]
    return Expected(blocks, moves, tuple(reversed(left)))


def placed_ms(problem: Problem, task: TaskSpec, position: int, option: int, previous: str | None,
              processor: str) -> float:
    """The expected time on ``processor`` of a global-queue block placed there at request time: its
    profiled latency, plus the move of its input when the block before it ran on ``previous`` (None:
    the first block), charged to the receiving processor as Band does."""
    return float(task.positions[position][option].latency_ms[processor]) + _move_ms(problem, task, position, previous,
                                                                                     processor)


def _move_ms(problem: Problem, task: TaskSpec, position: int, previous: str | None, processor: str) -> float:
    """The transfer of block ``position``'s input to ``processor`` from ``previous`` (None: the first block)."""
    return problem.transfer_ms(task.output_mb[position - 1]) if previous not in (None, processor) else 0.0
