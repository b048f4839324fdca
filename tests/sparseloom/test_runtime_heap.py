"""The runtime keeps the heap it starts with out of the garbage collector's scans while it serves."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from scheduler import registry
from sparseloom.runtime import Runtime
from stitching.pool import Pool
from tests.sparseloom.runtime_helpers import digits_problem, host_soc


def _scanned(obj: object) -> bool:
    # gc.get_objects() lists generations 0-2, not the permanent one gc.freeze() fills.
    return any(o is obj for o in gc.get_objects())


@pytest.mark.parametrize("freeze", [True, False])
def test_objects_alive_at_start_stay_out_of_collections_until_close(freeze: bool, pool: Pool, dirs: Path) -> None:
    gc.unfreeze()
    alive = [[0]]  # a container, so the collector tracks it
    assert _scanned(alive)
    problem = digits_problem(pool, ("cpu0",), variants=("dense",))
    with Runtime(problem, registry.create("sparseloom"), host_soc("tvm", 1), pool, cache_dir=dirs / "cc",
                 freeze_heap=freeze) as rt:
        assert _scanned(alive) is not freeze
        rt.warm()
        made_after = [[1]]  # created once the runtime started: collected as usual
        rt.warm()  # warm freezes again what is alive by then
        assert _scanned(made_after) is not freeze
        gc.collect()  # a full collection while serving leaves the frozen objects where they are
        assert _scanned(alive) is not freeze
        assert (gc.get_freeze_count() > 0) is freeze
    assert _scanned(alive) and _scanned(made_after)
    assert gc.get_freeze_count() == 0
