"""What a request costs beyond the profile, by how long its processor sat idle before its first block.

The runtime spends time on a request that no block profile holds: the decision and admission, waking
the worker thread, caches and thread pools gone cold while the processor idled, handing the request
from block to block, completing it. Most of it grows with the idle gap before the request's first
block (a worker that just finished a block picks the next one up at once, with warm caches; one
asleep for 20 ms does not), and it varies from request to request. A :class:`WakeCurve` holds such a
cost as measured: at each of a few idle gaps, the quantiles of the cost over probe requests. The
simulator draws ``cost(gap, u)``: the gap the processor really idled before the request's first block
started, and ``u`` a uniform draw, so both the curve and its spread are modelled (``u = 0.5``: the
median curve).

Where in the request the cost falls matters as much as its size: a policy that drops late requests
checks each block against the deadline when it is about to start. So the cost is held in two parts,
as the runtime measures them. The *start* cost (from when the worker took the request to its last
block's start, beyond the blocks run before it) is charged to the first block, and counts before that
block's own check: the runtime's worker picks a request up (wakes, completes its previous one) before
it checks it, and on a loaded host that pick-up alone can outlast a tight SLO's slack. A request a
check drops is a sample too (its cost up to the check), or the curve would hold only the requests
fast enough to pass. The *finish* cost (from the last block's start to the request's end, beyond that
block's run time: its spread and the completion) is charged to the last block, after the last check.

The start cost also depends on what the processor ran last. After a block of the same task its
weights and code are still in cache (warm); after another task's (say a 40 ms MiniLM block after a
0.4 ms CNN one) they are not (cold). A :class:`Wake` holds a task's two start curves, the simulator
picking by the task of the processor's previous block, and its finish curve.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Probability levels each gap's samples are summarised at: every 5% in the body, and closer towards
# the extremes (0 and 1, which the draw still reaches). The draw is linear between levels, so the
# last step carries its whole share of probability: with even 5% steps, one probe request preempted
# for 7 ms among 700 (0.14%) was drawn for 5% of requests at 3.5 ms on average, and the simulated p99
# came out 40% over the measured. A 0.1% last step keeps such outliers near their own frequency
# while a bin of a few hundred samples (probe runs: 80-2000 requests per task) still resolves it.
_TAIL = (0.001, 0.005, 0.01, 0.02)
LEVELS = (0.0, *_TAIL, *(i / 20 for i in range(1, 20)), *(1.0 - t for t in reversed(_TAIL)), 1.0)


@dataclass(frozen=True)
class WakeCurve:
    """A request's cost over the profile (ms, negative where the profile overestimates) after its
    first block's processor idled ``gaps_ms[i]``: ``cost_ms[i][j]`` is the ``LEVELS[j]`` quantile.

    Between gaps the cost is linear in the gap; beyond the first and last gap it stays flat.
    """

    gaps_ms: tuple[float, ...]
    cost_ms: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.gaps_ms or len(self.gaps_ms) != len(self.cost_ms):
            raise ValueError(f"a wake curve needs one row of costs per gap, got {len(self.gaps_ms)} gaps "
                             f"and {len(self.cost_ms)} rows")
        if any(b <= a for a, b in zip(self.gaps_ms, self.gaps_ms[1:])) or self.gaps_ms[0] < 0:
            raise ValueError(f"wake curve gaps must be >= 0 and increasing, got {self.gaps_ms}")
        for row in self.cost_ms:
            if len(row) != len(LEVELS) or not all(math.isfinite(c) for c in row):
                raise ValueError(f"each wake curve row needs {len(LEVELS)} finite costs (one per level)")
            if any(b < a for a, b in zip(row, row[1:])):
                raise ValueError("each wake curve row must be quantiles (non-decreasing)")

    @classmethod
    def measured(cls, samples_ms: Mapping[float, Sequence[float]]) -> WakeCurve:
        """The curve of probe samples: per idle gap (ms), the measured costs (ms); gaps without
        samples are left out."""
        gaps = sorted(g for g, s in samples_ms.items() if len(s))
        if not gaps:
            raise ValueError("a wake curve needs samples at one idle gap at least")
        rows = tuple(tuple(float(x) for x in np.quantile(np.asarray(samples_ms[g], dtype=float), LEVELS)) for g in gaps)
        return cls(tuple(float(g) for g in gaps), rows)

    def cost(self, gap_ms: float, u: float = 0.5) -> float:
        """The cost after ``gap_ms`` idle at probability level ``u`` in [0, 1]."""
        j = min(max(bisect.bisect_right(LEVELS, u) - 1, 0), len(LEVELS) - 2)
        f = (u - LEVELS[j]) / (LEVELS[j + 1] - LEVELS[j])
        gaps = self.gaps_ms
        i = bisect.bisect_right(gaps, gap_ms)
        if i == 0 or i == len(gaps):
            row = self.cost_ms[0 if i == 0 else -1]
            return row[j] + f * (row[j + 1] - row[j])
        g0, g1 = gaps[i - 1], gaps[i]
        w = (gap_ms - g0) / (g1 - g0)
        a, b = self.cost_ms[i - 1], self.cost_ms[i]
        lo = a[j] + w * (b[j] - a[j])
        hi = a[j + 1] + w * (b[j + 1] - a[j + 1])
        return lo + f * (hi - lo)

    def median_ms(self) -> dict[float, float]:
        """The median cost per measured gap (for reports)."""
        mid = LEVELS.index(0.5)
        return {g: row[mid] for g, row in zip(self.gaps_ms, self.cost_ms)}


@dataclass(frozen=True)
class Wake:
    """A task's start cost after a block of the same task on that processor (``warm``) and after
    another task's or none (``cold``; None where never measured: the warm curve serves), and its
    finish cost (None: none charged), both by the first block's idle gap (see the module docstring)."""

    warm: WakeCurve | None
    cold: WakeCurve | None = None
    finish: WakeCurve | None = None

    def __post_init__(self) -> None:
        if self.warm is None and self.cold is None:
            raise ValueError("a wake needs a warm or a cold curve")

    def curve(self, warm: bool) -> WakeCurve:
        c = (self.warm or self.cold) if warm else (self.cold or self.warm)
        assert c is not None
        return c
