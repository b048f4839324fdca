"""The costly part of a setting saved beside its pool: it round-trips, and anything that is not
exactly this setting's (another fingerprint, a damaged file) is computed again rather than used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stitching.multitask import saved
from stitching.multitask.masks import Alignment
from stitching.multitask.tiles import grids

GRIDS = grids({"fc0": (64, 96), "fc1": (40, 64)}, 32)  # fc1 has uneven edge tiles


def _masks() -> saved.Masks:
    rng = np.random.default_rng(0)
    keys = [k for g in GRIDS.values() for k in g.tile_keys()]
    pick = {t: frozenset(k for k in keys if rng.random() < 0.5) for t in ("a", "b")}
    heads = {
        "independent": {t: (rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=3).astype(np.float32)) for t in ("a", "b")},
        "aligned": {t: tuple(rng.normal(size=s).astype(np.float32) for s in ((3, 8), (3,), (2, 8))) for t in ("a", "b")},
    }
    alignment = Alignment({"a": pick["b"], "b": pick["b"]}, {"a": 0.875, "b": 1.0}, {"a": 0.91, "b": 0.95}, {"a": 0.92, "b": 0.95}, 0.01, 3)
    return saved.Masks({"a": 0.99, "b": 0.98}, pick, {"a": 0.92, "b": 0.95}, heads, alignment)  # type: ignore[arg-type]


def test_masks_heads_and_accuracies_round_trip(tmp_path: Path) -> None:
    masks = _masks()
    path = tmp_path / saved.FILE
    saved.save_masks(path, "k1", masks, GRIDS)
    back = saved.load_masks(path, "k1", GRIDS)
    assert back is not None
    assert back.independent == masks.independent and back.alignment.masks == masks.alignment.masks
    assert back.dense_accuracy == masks.dense_accuracy and back.independent_accuracy == masks.independent_accuracy
    assert back.alignment.core_fraction == masks.alignment.core_fraction
    assert back.alignment.evaluations == 3 and back.alignment.tolerance == 0.01
    for fam in ("independent", "aligned"):
        for t in ("a", "b"):
            assert len(back.heads[fam][t]) == len(masks.heads[fam][t])  # the norm comes back with its head
            for x, y in zip(back.heads[fam][t], masks.heads[fam][t], strict=True):
                np.testing.assert_array_equal(x, y)


def test_another_fingerprint_or_a_damaged_file_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / saved.FILE
    assert saved.load_masks(path, "k1", GRIDS) is None  # nothing saved yet
    saved.save_masks(path, "k1", _masks(), GRIDS)
    assert saved.load_masks(path, "k2", GRIDS) is None
    path.write_bytes(path.read_bytes()[:40])
    with pytest.warns(UserWarning, match="unreadable"):
        assert saved.load_masks(path, "k1", GRIDS) is None


def test_the_fingerprint_follows_weights_and_configuration() -> None:
    w = {"fc0": np.ones((4, 4), dtype=np.float32)}
    base = saved.fingerprint(w, {"tolerance": 0.01})
    assert saved.fingerprint(w, {"tolerance": 0.01}) == base
    assert saved.fingerprint(w, {"tolerance": 0.02}) != base
    w2 = {"fc0": w["fc0"].copy()}
    w2["fc0"][0, 0] = 2.0
    assert saved.fingerprint(w2, {"tolerance": 0.01}) != base
