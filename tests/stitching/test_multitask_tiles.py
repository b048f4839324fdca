"""Tiles round-trip through both pool layouts; zero tiles are skipped; identical tiles are stored once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stitching.multitask.store import FileTileStore, PackedTileStore, Run, TileStore
from stitching.multitask.tiles import (
    TileKey,
    all_keys,
    assemble,
    grids,
    split_tiles,
    tile_digest,
    tile_mask_to_dense,
)


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # One shape the tile size does not divide, to cover edge tiles.
    return {"fc0": rng.standard_normal((96, 64)).astype(np.float32), "fc1": rng.standard_normal((50, 70)).astype(np.float32)}


@pytest.mark.parametrize("layout", ["packed", "file"])
def test_split_store_load_reassemble_equals_masked_weights(tmp_path: Path, layout: str) -> None:
    weights = _weights(0)
    g = grids({n: w.shape for n, w in weights.items()}, 32)  # type: ignore[misc]
    rng = np.random.default_rng(1)
    keep = {k for k in all_keys(g) if rng.random() < 0.5}
    dense = tile_mask_to_dense(g, keep)
    masked = {n: w * dense[n] for n, w in weights.items()}

    tiles = split_tiles(masked, 32)
    assert set(tiles) == keep  # masked-away tiles are all zero and not emitted
    store: TileStore = PackedTileStore(tmp_path) if layout == "packed" else FileTileStore(tmp_path)
    digests = {k: tile_digest(t) for k, t in tiles.items()}
    for k, t in tiles.items():
        store.put(digests[k], t)
    store.flush()

    reopened: TileStore = PackedTileStore(tmp_path) if layout == "packed" else FileTileStore(tmp_path)
    loaded = reopened.read(digests.values())
    back = assemble(g, {k: loaded[d] for k, d in digests.items()})
    for name in weights:
        np.testing.assert_array_equal(back[name], masked[name])
    some = next(iter(digests.values()))
    assert reopened.has(some) and not reopened.has("0" * 64)
    np.testing.assert_array_equal(reopened.get(some), loaded[some])


def test_identical_tiles_share_one_digest_and_one_stored_copy(tmp_path: Path) -> None:
    block = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    w = np.tile(block, (2, 2))  # four identical tiles
    tiles = split_tiles({"fc0": w}, 16)
    digests = {tile_digest(t) for t in tiles.values()}
    assert len(tiles) == 4 and len(digests) == 1
    store = PackedTileStore(tmp_path)
    for t in tiles.values():
        store.put(tile_digest(t), t)
    store.flush()
    assert sum(f.stat().st_size for f in store.files()) < 2 * block.nbytes


def test_digest_depends_on_shape_not_only_bytes() -> None:
    a = np.zeros((2, 8), dtype=np.float32) + 1
    assert tile_digest(a) != tile_digest(a.reshape(4, 4))


def test_pack_reads_merge_adjacent_ranges(tmp_path: Path) -> None:
    store = PackedTileStore(tmp_path)
    arrays = [np.full((4, 4), i, dtype=np.float32) for i in range(1, 7)]
    ds = [tile_digest(a) for a in arrays]
    for d, a in zip(ds, arrays, strict=True):
        store.put(d, a)
    store.flush()
    assert len(store.runs(ds[:3])) == 1
    assert len(store.runs([ds[0], ds[2]])) == 2
    got = store.read([ds[0], ds[2], ds[5]])
    np.testing.assert_array_equal(got[ds[5]], arrays[5])
    # A gap of one tile (64 bytes) is read through when allowed, and the tiles still land right.
    assert len(store.runs([ds[0], ds[2]], max_gap_bytes=64)) == 1
    assert len(store.runs([ds[0], ds[3]], max_gap_bytes=64)) == 2
    order = store.digests()
    runs = store.runs([ds[0], ds[2], ds[5]], max_gap_bytes=64)
    out: dict[str, np.ndarray] = {}

    def iov_for(run: Run) -> list[memoryview]:
        views = []
        for i in run.positions.tolist():
            out[order[i]] = np.empty((4, 4), np.float32)
            views.append(out[order[i]].reshape(-1).view(np.uint8).data)
        return views

    assert store.read_runs(runs, iov_for) == 3 * 64
    for i in (0, 2, 5):
        np.testing.assert_array_equal(out[ds[i]], arrays[i])


def test_tile_key_label_round_trip() -> None:
    key = TileKey("fc3", 7, 11)
    assert TileKey.parse(key.label()) == key


@pytest.mark.parametrize("layout", ["packed", "file"])
def test_verify_names_an_altered_or_truncated_tile(tmp_path: Path, layout: str) -> None:
    from stitching.multitask.setting import _checked

    make = PackedTileStore if layout == "packed" else FileTileStore
    store = make(tmp_path / "s")
    tiles = split_tiles(_weights(3), 16)
    for tile in tiles.values():
        store.put(tile_digest(tile), tile)
    store.flush()
    assert make(tmp_path / "s").verify() == []
    victim = store.files()[0]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x10  # one bit of the last tile's bytes
    victim.write_bytes(bytes(data))
    problems = make(tmp_path / "s").verify()
    assert len(problems) == 1 and victim.name in problems[0] and "altered" in problems[0]
    with pytest.warns(UserWarning, match="rebuilding"):
        fresh = _checked(tmp_path / "s", make)
    assert fresh.verify() == [] and not fresh.files()
    if layout == "packed":
        victim.parent.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / "index.json").write_text('{"tiles": {')  # a torn index
        with pytest.warns(UserWarning, match="unreadable index"):
            _checked(tmp_path / "s", make)
