"""The multi-task setting: one MLP backbone on the 8x8 digits shared by four labelling tasks.

Real data only: scikit-learn's bundled digits, split 75/25 (stratified, fixed seed). The backbone
and the four heads are trained jointly (sum of the task losses), deterministically, and cached
as one safetensors file keyed by the configuration. Accuracy under a tile mask is measured on the
held-out split after re-fitting that task's head (ridge classifier) on the frozen, masked backbone.

Tasks: ``digit`` (10 classes), ``parity`` (odd/even), ``ge5`` (digit >= 5), ``loops`` (digit has a
closed loop: 0, 6, 8, 9). The driving scenario of the paper names them ``car``, ``traffic_light``,
``obstacle`` and ``person`` (see ``DRIVING_TASKS``); the names are only labels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save
from tqdm import tqdm

from stitching.atomic import write_bytes
from stitching.multitask.tiles import TileGrid, TileKey, grids, tile_mask_to_dense

TASK_CLASSES: dict[str, int] = {"digit": 10, "parity": 2, "ge5": 2, "loops": 2}
LOOP_DIGITS = (0, 6, 8, 9)
# Driving-scenario name -> digits task (the paper's perception tasks, mapped onto ours).
DRIVING_TASKS: dict[str, str] = {"car": "digit", "traffic_light": "parity", "obstacle": "ge5", "person": "loops"}


def task_labels(task: str, digits: np.ndarray) -> np.ndarray:
    if task == "digit":
        return digits.astype(np.int64)
    if task == "parity":
        return (digits % 2).astype(np.int64)
    if task == "ge5":
        return (digits >= 5).astype(np.int64)
    if task == "loops":
        return np.isin(digits, LOOP_DIGITS).astype(np.int64)
    raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_CLASSES)}")


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


@dataclass(frozen=True)
class MultiTaskModel:
    """Backbone weights ``fc0..fcN`` (``[out, in]``), their biases, and one linear head per task."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    heads: dict[str, tuple[np.ndarray, np.ndarray]]
    seed: int

    @property
    def layers(self) -> list[str]:
        return sorted(self.weights, key=lambda n: int(n[2:]))

    def grids(self, tile_size: int) -> dict[str, TileGrid]:
        return grids({n: (self.weights[n].shape[0], self.weights[n].shape[1]) for n in self.layers}, tile_size)

    def backbone_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())


def _config_key(hidden: tuple[int, ...], epochs: int, batch: int, seed: int) -> str:
    text = json.dumps({"hidden": hidden, "epochs": epochs, "batch": batch, "seed": seed, "tasks": sorted(TASK_CLASSES), "v": 1})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def features(
    weights: Mapping[str, np.ndarray], biases: Mapping[str, np.ndarray], x: np.ndarray
) -> np.ndarray:
    """Backbone output (ReLU after every layer) for inputs ``x``."""
    h = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        for name in sorted(weights, key=lambda n: int(n[2:])):
            h = torch.relu(h @ torch.from_numpy(weights[name]).T + torch.from_numpy(biases[name]))
    return h.numpy()


def _torch_net(hidden: tuple[int, ...]) -> tuple[torch.nn.ModuleList, torch.nn.ModuleDict]:
    dims = (64, *hidden)
    backbone = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in pairwise(dims))
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(hidden[-1], k) for t, k in sorted(TASK_CLASSES.items())})
    return backbone, heads


def _forward(backbone: torch.nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for layer in backbone:
        x = torch.relu(layer(x))
    return x


def train_multitask(
    cache_dir: Path | None,
    hidden: tuple[int, ...] = (2048, 2048, 1024),
    epochs: int = 6,
    batch: int = 128,
    seed: int = 0,
    split: DigitsSplit | None = None,
) -> MultiTaskModel:
    """Train (or load from ``cache_dir``) the shared backbone and the four heads jointly."""
    path = cache_dir / f"multitask-{_config_key(hidden, epochs, batch, seed)}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        return _from_tensors(load_file(str(path)), seed)
    split = split or load_split(seed)
    torch.manual_seed(seed)
    backbone, heads = _torch_net(hidden)
    params = list(backbone.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    x = torch.from_numpy(split.x_train)
    labels = {t: torch.from_numpy(task_labels(t, split.d_train)) for t in TASK_CLASSES}
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="train multitask backbone", file=sys.stderr, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            feats = _forward(backbone, x[idx])
            loss = sum(
                torch.nn.functional.cross_entropy(heads[t](feats), labels[t][idx]) for t in sorted(TASK_CLASSES)
            )
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
    tensors: dict[str, np.ndarray] = {}
    for name, param in backbone.named_parameters():  # "0.weight", "0.bias", ...
        index, kind = name.split(".")
        tensors[f"backbone.fc{index}.{kind}"] = param.detach().numpy().copy()
    for name, param in heads.named_parameters():  # "digit.weight", ...
        tensors[f"head.{name}"] = param.detach().numpy().copy()
    if path is not None:
        write_bytes(path, save(tensors))
    return _from_tensors(tensors, seed)


def _from_tensors(tensors: Mapping[str, np.ndarray], seed: int) -> MultiTaskModel:
    weights: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    heads: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, value in tensors.items():
        parts = name.split(".")
        if parts[0] == "backbone":
            (weights if parts[2] == "weight" else biases)[parts[1]] = np.ascontiguousarray(value, dtype=np.float32)
    for t in TASK_CLASSES:
        heads[t] = (tensors[f"head.{t}.weight"].astype(np.float32), tensors[f"head.{t}.bias"].astype(np.float32))
    return MultiTaskModel(weights, biases, heads, seed)


def importance(model: MultiTaskModel, task: str, split: DigitsSplit, batch: int = 256) -> dict[str, np.ndarray]:
    """Element importance |w| x |dL_task/dw| summed over mini-batches of the task's training data."""
    ws = {n: torch.from_numpy(model.weights[n].copy()).requires_grad_(True) for n in model.layers}
    bs = {n: torch.from_numpy(model.biases[n]) for n in model.layers}
    hw, hb = (torch.from_numpy(a) for a in model.heads[task])
    x = torch.from_numpy(split.x_train)
    y = torch.from_numpy(task_labels(task, split.d_train))
    score = {n: torch.zeros_like(w) for n, w in ws.items()}
    for start in range(0, len(x), batch):
        h = x[start : start + batch]
        for n in model.layers:
            h = torch.relu(h @ ws[n].T + bs[n])
        loss = torch.nn.functional.cross_entropy(h @ hw.T + hb, y[start : start + batch])
        grads = torch.autograd.grad(loss, [ws[n] for n in model.layers])
        for n, g in zip(model.layers, grads, strict=True):
            score[n] += (ws[n].detach() * g).abs()
    return {n: s.numpy() for n, s in score.items()}


def masked_weights(
    model: MultiTaskModel, keep: Iterable[TileKey] | None, tile_size: int
) -> dict[str, np.ndarray]:
    if keep is None:
        return model.weights
    dense = tile_mask_to_dense(model.grids(tile_size), keep)
    return {n: model.weights[n] * dense[n] for n in model.layers}


def fit_head(feats: np.ndarray, y: np.ndarray, n_classes: int, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Re-fit a linear head on frozen features: a ridge classifier (closed form, fast, deterministic)."""
    from sklearn.linear_model import RidgeClassifier

    ridge = RidgeClassifier(alpha=alpha).fit(feats, y)
    coef = np.atleast_2d(ridge.coef_).astype(np.float32)
    intercept = np.atleast_1d(ridge.intercept_).astype(np.float32)
    if n_classes == 2 and coef.shape[0] == 1:
        # One score s for class 1; the head [-s, s] picks the same class by argmax.
        return np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    return coef, intercept


def head_accuracy(feats: np.ndarray, y: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> float:
    logits = feats @ head[0].T + head[1]
    return float(np.mean(np.argmax(logits, axis=1) == y))


@dataclass(frozen=True)
class MaskedTask:
    """A task under one tile mask: its re-fitted head and held-out accuracy (measured)."""

    task: str
    accuracy: float
    head: tuple[np.ndarray, np.ndarray]


def evaluate_mask(
    model: MultiTaskModel, task: str, keep: Iterable[TileKey] | None, tile_size: int, split: DigitsSplit
) -> MaskedTask:
    """Held-out accuracy of ``task`` with the backbone restricted to ``keep`` (None: dense).

    The head is re-fitted the same way in every case, so dense and masked accuracies compare.
    """
    y_test = task_labels(task, split.d_test)
    w = masked_weights(model, keep, tile_size)
    head = fit_head(features(w, model.biases, split.x_train), task_labels(task, split.d_train), TASK_CLASSES[task])
    return MaskedTask(task, head_accuracy(features(w, model.biases, split.x_test), y_test, head), head)
