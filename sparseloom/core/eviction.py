"""Which resident blocks to evict to make room for a load: one rule for the simulator and the runtime.

Only idle blocks (resident, and run by no processor now) may go, least recently used first, in four
tiers: blocks no dispatched request still needs, outside the plan's resident set, then inside it;
then, for a demand load only (a processor waits for it), blocks that dispatched requests will need,
outside the plan's resident set, then inside it. A prefetch or a plan's pre-load never evicts a
block a dispatched request needs: that would trade a load now for a demand load later.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Protocol, TypeVar

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)
V_co = TypeVar("V_co", covariant=True)


class Lookup(Protocol[K_contra, V_co]):
    """Anything indexable by a block: a list by block id (simulator) or a mapping by digest (runtime)."""

    def __getitem__(self, key: K_contra, /) -> V_co: ...


def victims(
    idle: Sequence[K],
    need_mb: float,
    free_mb: float,
    size_mb: Lookup[K, float],
    wanted: Lookup[K, int],
    plan_set: Container[K],
    demand: bool,
) -> list[K] | None:
    """The blocks of ``idle`` (least recently used first) to evict so that ``need_mb`` fits in
    ``free_mb`` plus what they free, in the module's tier order; None when even all of them would not
    make room (then nothing is to be evicted). ``wanted[b]``: dispatched requests still needing ``b``."""
    if need_mb <= free_mb + 1e-9:
        return []
    tiers = [
        [b for b in idle if wanted[b] == 0 and b not in plan_set],
        [b for b in idle if wanted[b] == 0 and b in plan_set],
    ]
    if demand:
        tiers.append([b for b in idle if wanted[b] > 0 and b not in plan_set])
        tiers.append([b for b in idle if wanted[b] > 0 and b in plan_set])
    out: list[K] = []
    for tier in tiers:
        for b in tier:
            if need_mb <= free_mb + 1e-9:
                return out
            out.append(b)
            free_mb += size_mb[b]
    return out if need_mb <= free_mb + 1e-9 else None
