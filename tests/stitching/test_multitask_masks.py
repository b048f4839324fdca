"""Jaccard on known masks; independent and aligned masks respect each task's sparsity target."""

from __future__ import annotations

import numpy as np
import pytest

from stitching.multitask.masks import (
    TileMask,
    align_masks,
    independent_mask,
    jaccard,
    jaccard_matrix,
    layer_budget,
    mean_pairwise_jaccard,
    respects_sparsity,
)
from stitching.multitask.tiles import TileKey, all_keys, grids

K = TileKey


def test_jaccard_known_values() -> None:
    a = frozenset({K("l", 0, 0), K("l", 0, 1), K("l", 1, 0)})
    b = frozenset({K("l", 0, 1), K("l", 1, 0), K("l", 1, 1)})
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, frozenset({K("m", 0, 0)})) == 0.0
    assert jaccard(frozenset(), frozenset()) == 1.0
    m = jaccard_matrix({"a": a, "b": b}, ["a", "b"])
    assert m == [[1.0, 0.5], [0.5, 1.0]]
    assert mean_pairwise_jaccard({"a": a, "b": b, "c": a}, ["a", "b", "c"]) == pytest.approx((0.5 + 1.0 + 0.5) / 3)


def _setup(seed: int = 0) -> tuple[dict, dict[str, dict[TileKey, float]], dict[str, float]]:
    g = grids({"fc0": (128, 64), "fc1": (256, 128), "fc2": (64, 256)}, 32)
    rng = np.random.default_rng(seed)
    scores = {t: {k: float(rng.random() * (1 + i)) for k in all_keys(g)} for i, t in enumerate(["a", "b", "c"])}
    return g, scores, {"a": 0.5, "b": 0.7, "c": 0.75}


def test_layer_budget_and_independent_mask_respect_target() -> None:
    g, scores, sparsity = _setup()
    assert layer_budget(g["fc1"], 0.75) == 8  # 32 tiles, keep a quarter
    for t, s in sparsity.items():
        mask = independent_mask(scores[t], g, s)
        assert respects_sparsity(mask, g, s)
        top = max(scores[t], key=lambda k: scores[t][k])
        assert top in mask
    with pytest.raises(ValueError):
        layer_budget(g["fc0"], 1.0)


def test_aligned_masks_respect_sparsity_and_raise_overlap() -> None:
    g, scores, sparsity = _setup()
    independent = {t: independent_mask(scores[t], g, sparsity[t]) for t in scores}
    result = align_masks(scores, g, sparsity, lambda t, m: 1.0, {t: 1.0 for t in scores}, tolerance=0.0)
    for t, s in sparsity.items():
        assert respects_sparsity(result.masks[t], g, s)
        # Alignment keeps the task's full budget: same number of tiles as its independent mask.
        assert len(result.masks[t]) == len(independent[t])
        assert result.core_fraction[t] == 1.0
    names = sorted(scores)
    assert mean_pairwise_jaccard(result.masks, names) > mean_pairwise_jaccard(independent, names)
    # With full sharing, the sparser task's mask is inside the denser one's.
    assert result.masks["c"] <= result.masks["a"]


def test_alignment_backs_off_a_task_that_loses_accuracy() -> None:
    g, scores, sparsity = _setup(1)
    independent = {t: independent_mask(scores[t], g, sparsity[t]) for t in scores}

    def accuracy(task: str, mask: TileMask) -> float:
        # Task "b" loses accuracy when fewer than 80% of its own tiles survive.
        if task != "b":
            return 0.9
        return 0.9 if len(mask & independent["b"]) >= 0.8 * len(independent["b"]) else 0.5

    result = align_masks(scores, g, sparsity, accuracy, {t: 0.9 for t in scores}, tolerance=0.01, step=0.25)
    assert result.accuracy["b"] >= 0.9 - 0.01
    assert result.core_fraction["b"] < 1.0
    assert result.core_fraction["a"] == 1.0 and result.core_fraction["c"] == 1.0
    assert all(respects_sparsity(result.masks[t], g, sparsity[t]) for t in scores)


def test_full_back_off_is_the_independent_mask() -> None:
    g, scores, sparsity = _setup(2)
    result = align_masks(scores, g, sparsity, lambda t, m: 0.0, {t: 1.0 for t in scores}, tolerance=0.0, step=0.5)
    for t in scores:
        assert result.core_fraction[t] == 0.0
        assert result.masks[t] == independent_mask(scores[t], g, sparsity[t])
