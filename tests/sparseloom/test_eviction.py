"""One eviction rule (sparseloom.core.eviction) for the simulator and the runtime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from backends.base import cache_options
from sparseloom.core.eviction import victims
from sparseloom.runtime.residency import Residency
from tests.sparseloom.runtime_helpers import digits_pool, host_soc


def test_tiers_unwanted_before_wanted_and_the_plan_set_last_within_each() -> None:
    # LRU order a, b, c, d; each 1 MB. b is wanted by a dispatched request; a and c are in the plan's set.
    idle, size = ["a", "b", "c", "d"], dict.fromkeys("abcd", 1.0)
    wanted, plan = Counter({"b": 1}), {"a", "c"}
    assert victims(idle, 1.0, 0.0, size, wanted, plan, demand=True) == ["d"]
    assert victims(idle, 2.0, 0.0, size, wanted, plan, demand=True) == ["d", "a"]
    assert victims(idle, 3.0, 0.0, size, wanted, plan, demand=True) == ["d", "a", "c"]
    assert victims(idle, 4.0, 0.0, size, wanted, plan, demand=True) == ["d", "a", "c", "b"]
    # A prefetch or a plan's pre-load never takes a wanted block: then it does not fit at all.
    assert victims(idle, 4.0, 0.0, size, wanted, plan, demand=False) is None
    assert victims(idle, 0.5, 1.0, size, wanted, plan, demand=False) == []
    # The simulator's form: block ids indexing lists.
    assert victims([3, 0, 2], 1.5, 0.0, [1.0, 1.0, 1.0, 1.0], [0, 0, 1, 0], {0}, demand=True) == [3, 0]


@pytest.fixture(scope="module")
def residency(tmp_path_factory: pytest.TempPathFactory) -> tuple[Residency, str, list[str]]:
    root = tmp_path_factory.mktemp("eviction")
    pool = digits_pool(root / "pool", root / "cache")
    digests = [b.digest for b in pool.blocks()][:3]
    soc = host_soc("torch", 1)
    proc = soc.processors[0]
    # Room for two of the three blocks, each counted as 1 MB.
    res = Residency(pool, {proc.name: proc}, 2.0, dict.fromkeys(digests, 1.0), cache_options(root / "cc"), lambda: 0.0)
    return res, proc.name, digests


def test_the_runtime_keeps_a_block_a_dispatched_request_still_needs(residency: tuple[Residency, str, list[str]]) -> None:
    res, proc, (a, b, c) = residency
    for d in (a, b):  # a is now the least recently used
        res.acquire(d, proc)
        res.release(d)
    res.want([a])  # a dispatched request will run a
    res.acquire(c, proc)
    res.release(c)
    # The old runtime rule (LRU first, wanted or not) evicted a; the shared rule evicts b.
    assert res.resident() == {a, c}
    res.unwant([a])
    res.acquire(b, proc)
    res.release(b)
    assert res.resident() == {c, b}  # a, no longer wanted and least recently used, goes now
