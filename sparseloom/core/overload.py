"""Overload limits at arrival, for the simulator and the runtime alike.

Beside a policy's own admission (:mod:`scheduler.admission`), a deployment bounds its load: at most
``max_in_flight`` requests admitted and unfinished at once (in the runtime each holds a queue slot
and its activations), and, with ``shed_factor``, no request whose route is expected to finish later
than that many times its latency SLO (expected: each block waits for its processor's backlog, then
runs at its expected latency). A request refused is never run and counts as a violation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.policy import QueueView

# The runtime's default bound on requests in flight: enough that a burst at a few times the
# sustainable rate queues rather than is refused, small enough that queued activations stay in MBs.
MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class Overload:
    """The limits (None: no limit)."""

    max_in_flight: int | None = MAX_IN_FLIGHT
    shed_factor: float | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.shed_factor is not None and not self.shed_factor > 0:
            raise ValueError(f"shed_factor must be > 0, got {self.shed_factor}")

    def refusal(self, in_flight: int, admitted: bool, slo_ms: float, steps: Iterable[tuple[str, float]],
                view: QueueView) -> str | None:
        """Why an arriving request is refused, or None to run it: ``in_flight`` admitted requests are
        unfinished, the policy's admission ``admitted`` it or not, ``steps`` are its route's
        (processor, expected latency) in order and ``view`` the driver's queues."""
        if self.max_in_flight is not None and in_flight >= self.max_in_flight:
            return f"{in_flight} requests in flight (limit {self.max_in_flight})"
        if not admitted:
            return "shed: its blocks would make more cheaper requests miss than it serves"
        if self.shed_factor is not None:
            expected = expected_finish_ms(steps, view)
            if expected > self.shed_factor * slo_ms:
                return f"expected to finish in {expected:.1f} ms, over {self.shed_factor:g} x SLO"
        return None


def expected_finish_ms(steps: Iterable[tuple[str, float]], view: QueueView) -> float:
    """How long from now a route of (processor, expected latency) steps is expected to take, each
    block starting once its processor's backlog has cleared and its predecessor has finished."""
    t = 0.0
    for processor, ms in steps:
        t = max(t, view.backlog_ms(processor)) + ms
    return t
