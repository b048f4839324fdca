"""Differential loading reads exactly the missing tiles and installs exactly the task's weights."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from stitching.multitask.loading import (
    ActiveWeights,
    TileCache,
    differential_set,
    modelled_load_ms,
)
from stitching.multitask.manifest import make_manifest, store_in_order
from stitching.multitask.store import PackedTileStore
from stitching.multitask.tiles import TileKey, all_keys, grids, tile_mask_to_dense


class CountingStore(PackedTileStore):
    """A packed store that remembers which digests each ``read`` asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.requests: list[frozenset[str]] = []

    def read(self, digests: Iterable[str], max_gap_bytes: int = 0) -> dict[str, np.ndarray]:
        wanted = frozenset(digests)
        self.requests.append(wanted)
        return super().read(wanted, max_gap_bytes)


def test_differential_set_is_exactly_the_missing_digests() -> None:
    assert differential_set({"a", "b", "c"}, {"b", "x"}) == {"a", "c"}
    assert differential_set({"a"}, {"a"}) == frozenset()


def test_switch_reads_only_missing_tiles_and_installs_the_masked_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = {"fc0": rng.standard_normal((64, 64)).astype(np.float32), "fc1": rng.standard_normal((32, 64)).astype(np.float32)}
    g = grids({n: w.shape for n, w in weights.items()}, 16)  # type: ignore[misc]
    keys = all_keys(g)
    mask_a = frozenset(k for k in keys if rng.random() < 0.5)
    mask_b = frozenset(k for k in keys if rng.random() < 0.5)
    heads = {t: (rng.standard_normal((3, 32)).astype(np.float32), rng.standard_normal(3).astype(np.float32)) for t in "ab"}
    man_a, tensors = make_manifest("a", weights, mask_a, heads["a"], 16)
    man_b, more = make_manifest("b", weights, mask_b, heads["b"], 16)
    tensors.update(more)
    store = CountingStore(tmp_path)
    store_in_order(store, [man_a, man_b], tensors)
    store = CountingStore(tmp_path)  # reopen from disk

    cache = TileCache()
    active = ActiveWeights(g)
    cache.load(store, man_a.digests())
    active.place(man_a.tiles, cache.data, (cache.data[man_a.head[0]], cache.data[man_a.head[1]]))

    loaded = cache.load(store, man_b.digests())
    missing = man_b.digests() - man_a.digests()
    assert store.requests[-1] == missing
    assert loaded == sum(man_b.nbytes[d] for d in missing)
    written = active.place(man_b.tiles, cache.data, (cache.data[man_b.head[0]], cache.data[man_b.head[1]]))
    assert written == len(mask_b - mask_a)  # tiles both masks hold stay in place
    dense = tile_mask_to_dense(g, mask_b)
    for name, w in weights.items():
        np.testing.assert_array_equal(active.weights[name], w * dense[name])
    np.testing.assert_array_equal(active.head[0] if active.head else None, heads["b"][0])

    cache.keep_only(man_b.digests())
    assert set(cache.data) == man_b.digests()
    assert cache.load(store, man_b.digests()) == 0  # all resident: nothing to read
    assert store.requests[-1] == frozenset()


def test_modelled_time_follows_the_bandwidth() -> None:
    assert modelled_load_ms(2_000_000, 1.0) == pytest.approx(2.0)
    assert modelled_load_ms(0, 1.0, per_read_overhead_ms=0.1, reads=3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        modelled_load_ms(1, 0.0)


def test_tile_keys_in_a_manifest_are_positions_of_nonzero_tiles() -> None:
    w = {"fc0": np.ones((32, 32), dtype=np.float32)}
    man, _ = make_manifest("t", w, [TileKey("fc0", 0, 1)], (np.ones((2, 32), np.float32), np.zeros(2, np.float32)), 16)
    assert set(man.tiles) == {TileKey("fc0", 0, 1)}
    assert man.total_bytes() == 16 * 16 * 4 + 2 * 32 * 4 + 2 * 4
