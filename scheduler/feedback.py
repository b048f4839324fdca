"""Observed block latencies against the profile, per block x processor: the closed loop's table.

The simulator and the runtime each keep one :class:`Feedback` per run and add every block
execution to it (the expected latency the plan used and the one observed). A policy that closes
the loop (``Policy.recalibrate``) reads it to correct its latency table and decides whether the
error is large enough to re-plan on the corrected numbers. It is plain data, so runs never share
it and a policy object stays stateless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from scheduler.problem import Problem

# How often (ms, simulated or wall) the engines show a closed-loop policy what they observed: ten
# times a second. A re-plan costs tens of ms of solver time here, so looking more often would mostly
# find the last one still pending.
FEEDBACK_EVERY_MS = 100.0
# A (block, processor) pair is trusted once it has this many executions: at the profile-error
# coefficients of variation seen here (up to 0.3 per execution), the mean ratio over 20 samples is
# within about 13% (2 standard errors of the mean), less than the 15% re-plan threshold it feeds.
MIN_SAMPLES = 20


@dataclass
class Feedback:
    """Sums of expected and observed latency per (block digest, processor) since the run began."""

    expected_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    observed_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    count: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, digest: str, processor: str, expected_ms: float, observed_ms: float, n: int = 1) -> None:
        """Record ``n`` executions of ``digest`` on ``processor`` (sums of their expected and observed ms)."""
        key = (digest, processor)
        self.expected_ms[key] = self.expected_ms.get(key, 0.0) + expected_ms
        self.observed_ms[key] = self.observed_ms.get(key, 0.0) + observed_ms
        self.count[key] = self.count.get(key, 0) + n

    def copy(self) -> Feedback:
        """A snapshot that later executions do not change."""
        return Feedback(dict(self.expected_ms), dict(self.observed_ms), dict(self.count))

    def ratios(self) -> dict[tuple[str, str], float]:
        """Observed / expected latency of every pair with at least MIN_SAMPLES executions."""
        return {
            key: self.observed_ms[key] / e
            for key, e in self.expected_ms.items()
            if self.count[key] >= MIN_SAMPLES and e > 0
        }


# A factor observed on one block stands for an unobserved block on the same processor only when
# their profiled latencies are within this ratio of each other. Part of what a block costs beyond
# its profile is per call (dispatch, waking a worker, cold caches), so the ratio of a short block
# says little about a long one: on the 2-core host, digits blocks of 0.05-0.13 ms ran at 1.0-3.5x
# their profile and MiniLM blocks of 5.7-12.4 ms at 1.1-1.2x (calibrate's window, measured). Taking
# a digits block's 3.45 for MiniLM's blocks priced them at the SLO, and admission then shed every
# MiniLM request, so none ran and the guess was never corrected. A wider span lets one observed
# block correct more of its processor (a processor slowed as a whole); a narrower one keeps
# ratios from transferring across that per-call part. 4 covers one model's blocks at their
# sparsities here (digits: 2.8x apart, MiniLM: 2.2x) and not the 40x between models.
COMPARABLE_SPAN = 4.0


@dataclass(frozen=True)
class Correction:
    """Latency factors to apply to a problem: per observed pair, and for a block never observed on
    a processor, the median factor of that processor's observed pairs of comparable latency (within
    COMPARABLE_SPAN of the block's own; none, and its profile stands)."""

    pairs: dict[tuple[str, str], float]
    # Per processor: (expected ms per execution, factor) of each pair observed there.
    observed: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    @staticmethod
    def of(feedback: Feedback) -> Correction:
        pairs = feedback.ratios()
        by_proc: dict[str, list[tuple[float, float]]] = {}
        for key, r in pairs.items():
            by_proc.setdefault(key[1], []).append((feedback.expected_ms[key] / feedback.count[key], r))
        return Correction(pairs, {k: tuple(sorted(v)) for k, v in by_proc.items()})

    def factor(self, digest: str, processor: str, expected_ms: float) -> float:
        """The factor for ``digest`` on ``processor``, whose profiled latency is ``expected_ms``."""
        own = self.pairs.get((digest, processor))
        if own is not None:
            return own
        near = sorted(r for ms, r in self.observed.get(processor, ())
                      if expected_ms > 0 and 1.0 / COMPARABLE_SPAN <= ms / expected_ms <= COMPARABLE_SPAN)
        return near[len(near) // 2] if near else 1.0

    def worst_error(self, made_on: Mapping[tuple[str, str], float]) -> float:
        """The largest relative difference, over the pairs observed here, between these factors and
        those a plan was made on (``scheduler.policies.sparseloom.latency_factors``; 1 where absent), as exp(|log ratio|) - 1."""
        worst = 0.0
        for key, r in self.pairs.items():
            worst = max(worst, abs(math.log(r / made_on.get(key, 1.0))))
        return math.expm1(worst)

    def factors(self, problem: Problem) -> dict[tuple[str, str], float]:
        """The factor of every (block, processor) pair of ``problem`` that this correction changes."""
        out: dict[tuple[str, str], float] = {}
        for t in problem.tasks:
            for pos in t.positions:
                for o in pos:
                    for k, ms in o.latency_ms.items():
                        f = self.factor(o.digest, k, ms)
                        if f != 1.0:
                            out[(o.digest, k)] = f
        return out

    def apply(self, problem: Problem) -> Problem:
        """``problem`` with every option's latency on every processor times its factor."""
        if not self.pairs:
            return problem
        tasks = tuple(
            replace(t, positions=tuple(
                tuple(replace(o, latency_ms={k: ms * self.factor(o.digest, k, ms) for k, ms in o.latency_ms.items()})
                      for o in pos) for pos in t.positions))
            for t in problem.tasks
        )
        return replace(problem, tasks=tasks)

