"""Tiles round-trip through the pool; zero tiles are skipped; identical tiles are stored once; the pool's
``verify`` names a bad tile pack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stitching.multitask.store import PackedTileStore, Run
from stitching.pool import MANIFEST, verify
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


def test_split_store_load_reassemble_equals_masked_weights(tmp_path: Path) -> None:
    weights = _weights(0)
    g = grids({n: w.shape for n, w in weights.items()}, 32)
    rng = np.random.default_rng(1)
    keep = {k for k in all_keys(g) if rng.random() < 0.5}
    dense = tile_mask_to_dense(g, keep)
    masked = {n: w * dense[n] for n, w in weights.items()}

    tiles = split_tiles(masked, 32)
    assert set(tiles) == keep  # masked-away tiles are all zero and not emitted
    store = PackedTileStore(tmp_path)
    digests = {k: tile_digest(t) for k, t in tiles.items()}
    for k, t in tiles.items():
        store.put(digests[k], t)
    store.flush()

    reopened = PackedTileStore(tmp_path)
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


def test_pool_verify_names_an_altered_truncated_or_missing_tile_pack(tmp_path: Path) -> None:
    from stitching.multitask.setting import checked_pool

    root = tmp_path / "s"
    store = PackedTileStore(root)
    tiles = split_tiles(_weights(3), 16)
    for tile in tiles.values():
        store.put(tile_digest(tile), tile)
    store.flush()
    assert verify(root) == [] and (root / MANIFEST).is_file()
    victim = store.files()[0]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x10  # one bit of the last tile's bytes
    victim.write_bytes(bytes(data))
    problems = verify(root)
    assert len(problems) == 1 and victim.name in str(problems[0]) and "altered: tile" in str(problems[0])
    victim.write_bytes(bytes(data[:100]))
    assert "truncated" in str(verify(root)[0])
    victim.unlink()
    assert verify(root)[0].problem == "missing"
    with pytest.warns(UserWarning, match="rebuilding"):
        fresh = checked_pool(root)
    assert not (root / MANIFEST).exists() and not fresh.files()  # emptied; the next flush records it afresh
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text('{"format": ')  # a torn manifest
    with pytest.warns(UserWarning, match="rebuilding"):
        checked_pool(root)


def test_tiles_and_blocks_share_one_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tile flush keeps the blocks a pool already records, and the pool's reader lists both."""
    import json

    from sparseloom.cli import main
    from stitching.pool import FORMAT, Pool

    (tmp_path / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": {}, "blocks": [], "models": {"m": {"variants": ["dense"], "checkpoint_bytes": {"dense": 10}}}}))
    store = PackedTileStore(tmp_path)
    tile = np.ones((16, 16), np.float32)
    store.put(tile_digest(tile), tile)
    store.flush()
    assert Pool(tmp_path).models() == ["m"]
    assert PackedTileStore(tmp_path).has(tile_digest(tile))
    assert len(Pool(tmp_path).tiles().entries) == 1
    capsys.readouterr()
    assert main(["pool", "ls", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tiles"]["count"] == 1
