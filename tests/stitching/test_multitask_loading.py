"""Differential loading reads exactly the missing tiles and installs exactly the task's weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from stitching.multitask.loading import (
    ActiveWeights,
    TileCache,
    differential_set,
    modelled_load_ms,
    monolithic_runnable,
    read_tensors,
    head_tiles,
)
from stitching.multitask.manifest import (
    HeadManifest,
    make_manifest,
    monolithic_head,
    monolithic_tiles,
    store_in_order,
    write_monolithic,
)
from stitching.multitask.store import PackedTileStore, Run
from stitching.multitask.tiles import TileKey, all_keys, grids, tile_mask_to_dense


class CountingStore(PackedTileStore):
    """A packed store that remembers which digests each read asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.requests: list[frozenset[str]] = []

    def read_runs(self, runs: Sequence[Run], iov_for: Callable[[Run], list[memoryview]]) -> int:
        order = self.digests()
        self.requests.append(frozenset(order[i] for r in runs for i in r.positions.tolist()))
        return super().read_runs(runs, iov_for)


def test_differential_set_is_exactly_the_missing_digests() -> None:
    assert differential_set({"a", "b", "c"}, {"b", "x"}) == {"a", "c"}
    assert differential_set({"a"}, {"a"}) == frozenset()


def _two_tasks(tmp_path: Path, shape1: tuple[int, int] = (32, 64)) -> tuple[dict[str, np.ndarray], dict, HeadManifest, HeadManifest, dict]:
    rng = np.random.default_rng(0)
    weights = {"fc0": rng.standard_normal((64, 64)).astype(np.float32), "fc1": rng.standard_normal(shape1).astype(np.float32)}
    g = grids({n: w.shape for n, w in weights.items()}, 16)
    keys = all_keys(g)
    mask_a = frozenset(k for k in keys if rng.random() < 0.5)
    mask_b = frozenset(k for k in keys if rng.random() < 0.5)
    heads = {t: (rng.standard_normal((3, 32)).astype(np.float32), rng.standard_normal(3).astype(np.float32)) for t in "ab"}
    man_a, tensors = make_manifest("a", weights, mask_a, heads["a"], 16)
    man_b, more = make_manifest("b", weights, mask_b, heads["b"], 16)
    tensors.update(more)
    store = CountingStore(tmp_path)
    store_in_order(store, [man_a, man_b], tensors)
    return weights, g, man_a, man_b, heads


@pytest.mark.parametrize("shape1", [(32, 64), (40, 64)])  # even tiles (vectorised) and uneven edge tiles
def test_switch_reads_only_missing_tiles_and_installs_the_masked_weights(tmp_path: Path, shape1: tuple[int, int]) -> None:
    weights, g, man_a, man_b, heads = _two_tasks(tmp_path, shape1)
    store = CountingStore(tmp_path)  # reopen from disk
    cache = TileCache(store, 16)
    active = ActiveWeights(g)
    a, b = head_tiles(man_a, cache), head_tiles(man_b, cache)
    cache.load(a.ids)
    active.install(cache.runnable(a, g), cache.head(a))

    loaded = cache.load(b.ids)
    missing = man_b.digests() - man_a.digests()
    assert store.requests[-1] == missing
    assert loaded == sum(man_b.nbytes[d] for d in missing)
    active.install(cache.runnable(b, g), cache.head(b))
    cache.keep_only(b.ids)  # frees a's tiles; b's installed tables must not be touched
    cache.load(a.ids)  # reuses the freed slots
    dense = tile_mask_to_dense(g, frozenset(man_b.tiles))
    for name, w in weights.items():
        np.testing.assert_array_equal(active.dense()[name], w * dense[name])
    np.testing.assert_array_equal(active.head[0] if active.head else None, heads["b"][0])

    cache.keep_only(b.ids)
    assert cache.digests() == man_b.digests()
    assert cache.nbytes() == man_b.total_bytes()
    assert cache.load(b.ids) == 0  # all resident: nothing to read
    assert store.requests[-1] == frozenset()
    with pytest.raises(KeyError):
        cache.runnable(a, g)  # a's tiles are gone


def test_raw_reads_deliver_the_bytes_of_the_same_runs(tmp_path: Path) -> None:
    _, _, man_a, man_b, _ = _two_tasks(tmp_path, (32, 64))
    store = PackedTileStore(tmp_path)
    wanted = man_a.digests() | man_b.digests()
    runs = store.runs(wanted, max_gap_bytes=1 << 20)  # gaps merged: a run's bytes include them
    assert store.read_raw(runs) == sum(r.nbytes for r in runs)
    assert store.read_raw(runs) >= sum(man_a.nbytes.get(d, 0) or man_b.nbytes[d] for d in wanted)
    assert store.read_raw([]) == 0


@pytest.mark.parametrize("shape1", [(32, 64), (40, 72)])  # even tiles, and uneven edge tiles (stored apart)
def test_monolithic_file_runs_the_same_weights(tmp_path: Path, shape1: tuple[int, int]) -> None:
    weights, g, man_a, man_b, heads = _two_tasks(tmp_path, shape1)
    tensors = PackedTileStore(tmp_path).read(man_a.digests() | man_b.digests())
    active = ActiveWeights(g)
    for man in (man_a, man_b):
        write_monolithic(tmp_path / f"{man.task}.safetensors", man, tensors, 16)
        file = read_tensors(tmp_path / f"{man.task}.safetensors")
        assert monolithic_tiles(file)[0].keys() == man.tiles.keys()
        np.testing.assert_array_equal(monolithic_head(file)[1], heads[man.task][1])
        active.install(monolithic_runnable(file, g), monolithic_head(file))
    dense = tile_mask_to_dense(g, frozenset(man_b.tiles))
    for name, w in weights.items():
        np.testing.assert_array_equal(active.dense()[name], w * dense[name])


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


def test_read_curve_is_measured_at_the_sizes_the_files_hold(tmp_path: Path) -> None:
    from stitching.multitask.loading import measure_read_curve

    path = tmp_path / "f.bin"
    path.write_bytes(bytes(300_000))
    curve = measure_read_curve([path], sizes=(4096, 65536, 262144, 1 << 20), samples=3)
    assert curve.sizes == (4096, 65536, 262144)  # 1 MiB is larger than the file: left out
    assert all(ms > 0 for ms in curve.ms) and curve.source == "measured"
    with pytest.raises(ValueError):
        measure_read_curve([path], sizes=(1 << 20,))
