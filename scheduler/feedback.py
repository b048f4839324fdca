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


@dataclass(frozen=True)
class Correction:
    """Latency factors to apply to a problem: per observed pair, and per processor for the blocks
    never observed there (the median of that processor's observed pairs)."""

    pairs: dict[tuple[str, str], float]
    processors: dict[str, float]

    @staticmethod
    def of(feedback: Feedback) -> Correction:
        pairs = feedback.ratios()
        by_proc: dict[str, list[float]] = {}
        for (_, k), r in pairs.items():
            by_proc.setdefault(k, []).append(r)
        return Correction(pairs, {k: sorted(v)[len(v) // 2] for k, v in by_proc.items()})

    def factor(self, digest: str, processor: str) -> float:
        return self.pairs.get((digest, processor), self.processors.get(processor, 1.0))

    def worst_error(self, made_on: Mapping[tuple[str, str], float]) -> float:
        """The largest relative difference, over the pairs observed here, between these factors and
        those a plan was made on (``Plan.latency_factors``; 1 where absent), as exp(|log ratio|) - 1."""
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
                    for k in o.latency_ms:
                        f = self.factor(o.digest, k)
                        if f != 1.0:
                            out[(o.digest, k)] = f
        return out

    def apply(self, problem: Problem) -> Problem:
        """``problem`` with every option's latency on every processor times its factor."""
        if not self.pairs:
            return problem
        tasks = tuple(
            replace(t, positions=tuple(
                tuple(replace(o, latency_ms={k: ms * self.factor(o.digest, k) for k, ms in o.latency_ms.items()})
                      for o in pos) for pos in t.positions))
            for t in problem.tasks
        )
        return replace(problem, tasks=tasks)

