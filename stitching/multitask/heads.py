"""Multi-task heads: four labellings of the digits, each read off the shared backbone by its own head.

A *head* is one output of the multi-task model: a labelling of the digits, its linear classifier
and (on backbones that have one) its per-channel norm, and, in the study, its own tile mask. It is
not a DESIGN.md *task* (a stream of requests with SLOs): ``sparseloom switch`` serves each
workload task with one head (``DRIVING_HEADS`` maps the driving scenario's tasks onto them).

Real data only: scikit-learn's bundled digits. Accuracy under a tile mask is measured on the
held-out split after fitting that head's classifier (ridge) on the frozen, masked backbone
(:mod:`.backbone` says which backbones there are and how each runs masked).

Heads: ``digit`` (10 classes), ``parity`` (odd/even), ``ge5`` (digit >= 5), ``loops`` (digit has a
closed loop: 0, 6, 8, 9). The driving scenario of the paper names their tasks ``car``,
``traffic_light``, ``obstacle`` and ``person``; the names are only labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stitching.multitask.tiles import TileKey, grids, tile_mask_to_dense

if TYPE_CHECKING:
    from stitching.multitask.backbone import Backbone

HEAD_CLASSES: dict[str, int] = {"digit": 10, "parity": 2, "ge5": 2, "loops": 2}
LOOP_DIGITS = (0, 6, 8, 9)
# Driving-scenario task -> the head that serves it (the paper's perception tasks, mapped onto ours).
DRIVING_HEADS: dict[str, str] = {"car": "digit", "traffic_light": "parity", "obstacle": "ge5", "person": "loops"}
# A head's own tensors: head weight ``[classes, features]``, head bias, then (for backbones that
# have one) its per-channel norm ``[2, channels]``.
Head = tuple[np.ndarray, ...]


def head_labels(task: str, digits: np.ndarray) -> np.ndarray:
    if task == "digit":
        return digits.astype(np.int64)
    if task == "parity":
        return (digits % 2).astype(np.int64)
    if task == "ge5":
        return (digits >= 5).astype(np.int64)
    if task == "loops":
        return np.isin(digits, LOOP_DIGITS).astype(np.int64)
    raise ValueError(f"unknown task {task!r}; known: {sorted(HEAD_CLASSES)}")


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray
    d_train: np.ndarray
    x_test: np.ndarray
    d_test: np.ndarray


def load_split(seed: int = 0) -> DigitsSplit:
    # scikit-learn is imported where used: it takes a second to import, and the CLI loads this module.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    xt, xv, dt, dv = train_test_split(x, data.target, test_size=0.25, random_state=seed, stratify=data.target)
    return DigitsSplit(xt, dt, xv, dv)


def masked_weights(
    weights: Mapping[str, np.ndarray], keep: Iterable[TileKey] | None, tile_size: int
) -> dict[str, np.ndarray]:
    """``weights`` with every tile outside ``keep`` zeroed (None: unchanged)."""
    if keep is None:
        return dict(weights)
    dense = tile_mask_to_dense(grids({n: (w.shape[0], w.shape[1]) for n, w in weights.items()}, tile_size), keep)
    return {n: w * dense[n] for n, w in weights.items()}


def fit_head(feats: np.ndarray, y: np.ndarray, n_classes: int, alpha: float = 1.0) -> Head:
    """Re-fit a linear head on frozen features: a ridge classifier (closed form, fast, deterministic)."""
    from sklearn.linear_model import RidgeClassifier

    ridge = RidgeClassifier(alpha=alpha).fit(feats, y)
    coef = np.atleast_2d(ridge.coef_).astype(np.float32)
    intercept = np.atleast_1d(ridge.intercept_).astype(np.float32)
    if n_classes == 2 and coef.shape[0] == 1:
        # One score s for class 1; the head [-s, s] picks the same class by argmax.
        return np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    return coef, intercept


def head_accuracy(feats: np.ndarray, y: np.ndarray, head: Head) -> float:
    logits = feats @ head[0].T + head[1]
    return float(np.mean(np.argmax(logits, axis=1) == y))


@dataclass(frozen=True)
class MaskedHead:
    """A task under one tile mask: its re-fitted head and held-out accuracy (measured)."""

    task: str
    accuracy: float
    head: Head


def evaluate_mask(
    backbone: Backbone, task: str, keep: Iterable[TileKey] | None, tile_size: int, split: DigitsSplit
) -> MaskedHead:
    """Held-out accuracy of ``task`` with the backbone restricted to ``keep`` (None: dense).

    The head (and, where the backbone has one, its norm) is fitted the same way in every case,
    on the training split, so dense and masked accuracies compare.
    """
    return evaluate_heads(backbone, [task], keep, tile_size, split)[task]


def evaluate_heads(
    backbone: Backbone, tasks: Sequence[str], keep: Iterable[TileKey] | None, tile_size: int, split: DigitsSplit
) -> dict[str, MaskedHead]:
    """:func:`evaluate_mask` for several tasks under one mask: the backbone runs once for all of them."""
    w = masked_weights(backbone.weights, keep, tile_size)
    norm = backbone.specialise(w, split) if keep is not None else None
    train, test = backbone.features(w, norm, split.x_train), backbone.features(w, norm, split.x_test)
    out = {}
    for task in tasks:
        head = fit_head(train, head_labels(task, split.d_train), HEAD_CLASSES[task])
        if norm is not None:
            head = (*head, norm)
        out[task] = MaskedHead(task, head_accuracy(test, head_labels(task, split.d_test), head), head)
    return out


def head_norm(head: Head) -> np.ndarray | None:
    """The per-channel norm a head carries after its weight and bias, if any."""
    return head[2] if len(head) > 2 else None
