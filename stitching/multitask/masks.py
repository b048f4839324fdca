"""Per-task tile masks from importance, and overlap-aware alignment of those masks across tasks.

A task's mask is a set of backbone tiles (:class:`~stitching.multitask.tiles.TileKey`). Its
sparsity target ``s`` caps every layer at ``floor((1 - s) * tiles_in_layer)`` kept tiles (at least
one), so a mask respects the target layer by layer and overall.

Alignment (:func:`align_masks`): per layer, rank tiles by the sum over tasks of their importance
normalised per task (a shared core). Task ``t`` keeps the first ``c_t * budget`` tiles of that
shared ranking and tops up with its own most important remaining tiles. Every task starts at
``c_t = 1`` (most sharing); a task whose held-out accuracy falls more than ``tolerance`` below its
independent mask backs off in steps of ``step``. ``c_t = 0`` is the independent mask, so the
search always ends within tolerance.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from stitching.multitask.tiles import TileGrid, TileKey

TileMask = frozenset[TileKey]


def tile_importance(element_importance: Mapping[str, np.ndarray], layer_grids: Mapping[str, TileGrid]) -> dict[TileKey, float]:
    """Sum of element importance inside each tile."""
    out: dict[TileKey, float] = {}
    for name, grid in layer_grids.items():
        imp = element_importance[name]
        for key in grid.tile_keys():
            out[key] = float(imp[grid.slices(key)].sum())
    return out


def layer_budget(grid: TileGrid, sparsity: float) -> int:
    """Most tiles a mask at ``sparsity`` may keep in this layer."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity target must be in [0, 1), got {sparsity}")
    n = grid.rows * grid.cols
    return max(1, min(n, math.floor((1.0 - sparsity) * n + 1e-9)))


def respects_sparsity(mask: TileMask, layer_grids: Mapping[str, TileGrid], sparsity: float) -> bool:
    for name, grid in layer_grids.items():
        if sum(1 for k in mask if k.layer == name) > layer_budget(grid, sparsity):
            return False
    return True


def _ranked(scores: Mapping[TileKey, float], keys: Sequence[TileKey]) -> list[TileKey]:
    # Ties broken by position so the ranking is deterministic.
    return sorted(keys, key=lambda k: (-scores[k], k))


def independent_mask(
    scores: Mapping[TileKey, float], layer_grids: Mapping[str, TileGrid], sparsity: float
) -> TileMask:
    """The task's own most important tiles, layer by layer, up to its budget."""
    keep: set[TileKey] = set()
    for grid in layer_grids.values():
        keep.update(_ranked(scores, grid.tile_keys())[: layer_budget(grid, sparsity)])
    return frozenset(keep)


def _normalised(scores: Mapping[TileKey, float], layer_grids: Mapping[str, TileGrid]) -> dict[TileKey, float]:
    out: dict[TileKey, float] = {}
    for grid in layer_grids.values():
        keys = grid.tile_keys()
        total = sum(scores[k] for k in keys) or 1.0
        out.update({k: scores[k] / total for k in keys})
    return out


def shared_ranking(
    task_scores: Mapping[str, Mapping[TileKey, float]], layer_grids: Mapping[str, TileGrid]
) -> dict[str, list[TileKey]]:
    """Per layer, tiles ranked by summed per-task-normalised importance (the shared core order)."""
    normed = [_normalised(s, layer_grids) for s in task_scores.values()]
    summed = {k: sum(n[k] for n in normed) for k in normed[0]} if normed else {}
    return {name: _ranked(summed, grid.tile_keys()) for name, grid in layer_grids.items()}


def aligned_mask(
    own_scores: Mapping[TileKey, float],
    ranking: Mapping[str, list[TileKey]],
    layer_grids: Mapping[str, TileGrid],
    sparsity: float,
    core_fraction: float,
) -> TileMask:
    """The first ``core_fraction`` of the budget from the shared ranking, the rest from the task's own."""
    keep: set[TileKey] = set()
    for name, grid in layer_grids.items():
        budget = layer_budget(grid, sparsity)
        chosen = ranking[name][: round(core_fraction * budget)]
        chosen_set = set(chosen)
        own = [k for k in _ranked(own_scores, grid.tile_keys()) if k not in chosen_set]
        keep.update(chosen)
        keep.update(own[: budget - len(chosen)])
    return frozenset(keep)


@dataclass(frozen=True)
class Alignment:
    """Aligned masks with the core fraction each task ended at and its accuracy (measured)."""

    masks: dict[str, TileMask]
    core_fraction: dict[str, float]
    accuracy: dict[str, float]
    reference_accuracy: dict[str, float]
    tolerance: float
    evaluations: int


def align_masks(
    task_scores: Mapping[str, Mapping[TileKey, float]],
    layer_grids: Mapping[str, TileGrid],
    sparsity: Mapping[str, float],
    accuracy: Callable[[str, TileMask], float],
    reference_accuracy: Mapping[str, float],
    tolerance: float = 0.01,
    step: float = 0.125,
) -> Alignment:
    """Maximise shared tiles subject to each task's sparsity target and accuracy tolerance.

    ``accuracy(task, mask)`` measures a task under a mask; ``reference_accuracy`` is each task's
    accuracy with its independent mask; a task may lose at most ``tolerance`` (absolute) of it.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    ranking = shared_ranking(task_scores, layer_grids)
    fraction = {t: 1.0 for t in task_scores}
    masks: dict[str, TileMask] = {}
    acc: dict[str, float] = {}
    evaluations = 0
    pending = sorted(task_scores)
    with tqdm(desc="align masks", file=sys.stderr, leave=False) as bar:
        while pending:
            still: list[str] = []
            for t in pending:
                masks[t] = aligned_mask(task_scores[t], ranking, layer_grids, sparsity[t], fraction[t])
                acc[t] = accuracy(t, masks[t])
                evaluations += 1
                bar.update()
                if acc[t] < reference_accuracy[t] - tolerance and fraction[t] > 0.0:
                    fraction[t] = max(0.0, fraction[t] - step)
                    still.append(t)
            pending = still
    return Alignment(masks, fraction, acc, dict(reference_accuracy), tolerance, evaluations)


def jaccard(a: frozenset[TileKey] | set[TileKey], b: frozenset[TileKey] | set[TileKey]) -> float:
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def jaccard_matrix(masks: Mapping[str, frozenset[TileKey]], names: Sequence[str]) -> list[list[float]]:
    return [[jaccard(masks[a], masks[b]) for b in names] for a in names]


def mean_pairwise_jaccard(masks: Mapping[str, frozenset[TileKey]], names: Sequence[str]) -> float:
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return float(np.mean([jaccard(masks[a], masks[b]) for a, b in pairs])) if pairs else 1.0
