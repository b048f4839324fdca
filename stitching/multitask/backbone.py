"""The shared backbones of the multi-task study: what tiles cut, and how a masked backbone runs.

A :class:`Backbone` exposes its tiled weights as 2-D matrices ``[out, fan_in]`` (a conv's
``[out, in, kh, kw]`` is viewed as ``[out, in * kh * kw]``), runs on any weights of those shapes,
and scores its weights per task (|w| x |dL/dw|). Two are built in:

* :class:`ResNetBackbone`: the zoo's ``digits_resnet18`` (ResNet-18 trained here on the digits, 44.7 MB
  of conv weights), the study's default, or its quarter-width ``digits_resnet`` (2.8 MB). Tiling its convs without retraining
  moves every channel's statistics, and accuracy collapses (measured: digit 41% at 70% of its
  tiles gone). Each head therefore carries its own per-channel norm (:meth:`ResNetBackbone.specialise`):
  after its mask, every conv output is rescaled and shifted so that its per-channel mean and standard
  deviation over calibration images match the dense model's, in forward order. This is task-specific
  batch norm (Mudrakarta et al., 2019, "K for the price of 1"): 2 floats per channel (9.6 kB) per head,
  stored with the head; the tiles stay the shared, unmodified dense weights, so sharing still holds.
  Measured: digit 93% at 70% sparsity with it.
* :class:`MlpBackbone`: a ReLU MLP on the flat 8x8 digits, trained jointly with four heads, small and
  fast (the tests use it); no per-head norm (its ridge-refitted heads recover enough).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.numpy import load_file, save
from tqdm import tqdm

from stitching.atomic import write_bytes
from stitching.multitask.heads import HEAD_CLASSES, DigitsSplit, Head, head_labels, load_split
from stitching.multitask.tiles import TileGrid, grids
from stitching.partition import BlockModule

# Calibration images for a head's norm: from the training split, never the held-out one. 512 images
# give each channel of the smallest feature map (4x4) 8,192 samples for its mean and deviation.
NORM_CALIBRATION = 512


class Backbone(Protocol):
    """A shared backbone: tiled weight matrices, a forward pass over any of them, and importance."""

    @property
    def name(self) -> str: ...

    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        """The dense tiled weights, ``[out, fan_in]`` float32, in forward order."""
        ...

    @property
    def default_tile_size(self) -> int: ...

    def split(self) -> DigitsSplit:
        """Its data split, inputs shaped as it reads them."""
        ...

    def specialise(self, weights: Mapping[str, np.ndarray], split: DigitsSplit) -> np.ndarray | None:
        """A head's own norm for ``weights`` (a masked copy), or None when the backbone has none."""
        ...

    def features(self, weights: Mapping[str, np.ndarray], norm: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """The pooled features the heads read, for inputs ``x``."""
        ...

    def importance(self, task: str, head: Head, split: DigitsSplit) -> dict[str, np.ndarray]:
        """|w| x |dL_task/dw| per tiled weight, summed over the training split."""
        ...


def layer_grids(backbone: Backbone, tile_size: int) -> dict[str, TileGrid]:
    return grids({n: (w.shape[0], w.shape[1]) for n, w in backbone.weights.items()}, tile_size)


def backbone_bytes(backbone: Backbone) -> int:
    return sum(w.nbytes for w in backbone.weights.values())


# --------------------------------------------------------------------------------------------- ResNet


@dataclass(frozen=True)
class ResNetBackbone:
    """A zoo digits ResNet without its classifier; convs tiled, batch norm already folded into them."""

    module: torch.nn.Module  # the units before the head (the zoo's BlockModule, head dropped)
    weights: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    data: DigitsSplit = field(repr=False)  # loaded and upsampled once
    slices: dict[str, slice] = field(repr=False)  # each conv's channels in a head's norm
    dense_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    name: str = "digits_resnet"
    default_tile_size: int = 32  # 32 x 32 fp32 = one 4 KiB page per tile

    @classmethod
    def build(cls, cache_dir: Path | None, name: str = "digits_resnet") -> ResNetBackbone:
        """The zoo's trained model ``name`` (trained once, then cached: about 35 s on 2 cores for
        ``digits_resnet``, 3 minutes for ``digits_resnet18``)."""
        from stitching.zoo import digits_resnet

        base = digits_resnet.build(cache_dir or Path(".cache"), name)
        return cls.from_units(BlockModule(base.units[:-1]), name)

    @classmethod
    def from_units(cls, module: torch.nn.Module, name: str = "digits_resnet") -> ResNetBackbone:
        module = module.eval()
        convs = _convs(module)
        weights = {n: c.weight.detach().numpy().reshape(c.weight.shape[0], -1).astype(np.float32).copy() for n, c in convs.items()}
        shapes = {n: tuple(c.weight.shape) for n, c in convs.items()}
        starts = np.cumsum([0] + [s[0] for s in shapes.values()]).tolist()
        slices = {n: slice(a, b) for n, a, b in zip(shapes, starts[:-1], starts[1:], strict=True)}
        backbone = cls(module, weights, shapes, _upsampled_split(), slices, {}, name)
        x = torch.from_numpy(backbone.data.x_train[:NORM_CALIBRATION])
        with torch.no_grad(), backbone._hooked(weights, _Record(backbone.dense_stats)):
            module(x)
        return backbone

    def split(self) -> DigitsSplit:
        return self.data

    @contextmanager
    def _hooked(self, weights: Mapping[str, np.ndarray], on_output: _OnOutput) -> Iterator[None]:
        """The module with ``weights`` in place and ``on_output`` after every conv, for one pass."""
        convs = _convs(self.module)
        saved = {n: c.weight.data for n, c in convs.items()}
        hooks = []
        try:
            for n, c in convs.items():
                c.weight.data = torch.from_numpy(np.ascontiguousarray(weights[n])).reshape(self.shapes[n])
                hooks.append(c.register_forward_hook(lambda _m, _i, out, n=n: on_output(n, out)))
            yield
        finally:
            for h in hooks:
                h.remove()
            for n, c in convs.items():
                c.weight.data = saved[n]

    def specialise(self, weights: Mapping[str, np.ndarray], split: DigitsSplit) -> np.ndarray:
        """Per-channel scale and shift (``[2, channels]``) matching the dense model's statistics."""
        fit = _Match(self.dense_stats, self.slices)
        with torch.no_grad(), self._hooked(weights, fit):
            self.module(torch.from_numpy(split.x_train[:NORM_CALIBRATION]))
        return fit.norm

    def features(self, weights: Mapping[str, np.ndarray], norm: np.ndarray | None, x: np.ndarray, batch: int = 128) -> np.ndarray:
        # Batch 128: the 1,797 digits through digits_resnet18 take 14.6 s on 2 cores, 20.6 s at 512
        # (measured; the larger batch's activations leave the cache).
        apply: _OnOutput = _Apply(norm, self.slices) if norm is not None else _identity
        with torch.no_grad(), self._hooked(weights, apply):
            parts = [self.module(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
        return torch.cat(parts).mean(dim=(2, 3)).numpy()

    def importance(self, task: str, head: Head, split: DigitsSplit, batch: int = 256) -> dict[str, np.ndarray]:
        convs = _convs(self.module)
        hw, hb = (torch.from_numpy(a) for a in head[:2])
        y = torch.from_numpy(head_labels(task, split.d_train))
        score = {n: torch.zeros_like(c.weight) for n, c in convs.items()}
        for p in self.module.parameters():
            p.requires_grad_(True)
        for start in range(0, len(y), batch):
            out = self.module(torch.from_numpy(split.x_train[start : start + batch]))
            feats = out.mean(dim=(2, 3))
            loss = torch.nn.functional.cross_entropy(feats @ hw.T + hb, y[start : start + batch])
            grads = torch.autograd.grad(loss, [c.weight for c in convs.values()])
            for (n, c), g in zip(convs.items(), grads, strict=True):
                score[n] += (c.weight.detach() * g).abs()
        for p in self.module.parameters():
            p.requires_grad_(False)
        return {n: s.reshape(s.shape[0], -1).numpy() for n, s in score.items()}


def _upsampled_split() -> DigitsSplit:
    """The zoo's 70/30 digits split at the model's 32x32 input."""
    from stitching.zoo import digits, digits_resnet

    xtr, xte, ytr, yte = digits.data()
    up = [digits_resnet.upsample(torch.from_numpy(x)).numpy() for x in (xtr, xte)]
    return DigitsSplit(up[0], ytr, up[1], yte)


def _convs(module: torch.nn.Module) -> dict[str, torch.nn.Conv2d]:
    return {n: m for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}


class _OnOutput(Protocol):
    def __call__(self, name: str, out: torch.Tensor) -> torch.Tensor | None: ...


def _identity(name: str, out: torch.Tensor) -> None:
    return None


def _channel_stats(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3))


def _affine(out: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-channel ``out * scale + shift`` over an ``[N, C, H, W]`` output."""
    return out * scale[None, :, None, None] + shift[None, :, None, None]


@dataclass
class _Record:
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def __call__(self, name: str, out: torch.Tensor) -> None:
        self.stats[name] = _channel_stats(out)


class _Match:
    """Fits each conv's scale and shift in the one calibration pass, in forward order, and applies it
    at once, so every later conv is fitted on already corrected inputs."""

    def __init__(self, dense: Mapping[str, tuple[torch.Tensor, torch.Tensor]], slices: Mapping[str, slice]) -> None:
        self.dense, self.slices = dense, slices
        self.norm = np.zeros((2, max(s.stop for s in slices.values())), dtype=np.float32)

    def __call__(self, name: str, out: torch.Tensor) -> torch.Tensor:
        mean, std = _channel_stats(out)
        ref_mean, ref_std = self.dense[name]
        # A channel the mask silenced (std 0) keeps scale 1 and gets the dense mean as its shift.
        scale = torch.where(std > 1e-6, ref_std / std.clamp_min(1e-6), torch.ones_like(std))
        shift = ref_mean - scale * mean
        self.norm[0, self.slices[name]] = scale.numpy()
        self.norm[1, self.slices[name]] = shift.numpy()
        return _affine(out, scale, shift)


@dataclass(frozen=True)
class _Apply:
    norm: np.ndarray
    slices: Mapping[str, slice]

    def __call__(self, name: str, out: torch.Tensor) -> torch.Tensor:
        s = self.slices[name]
        return _affine(out, torch.from_numpy(self.norm[0, s]), torch.from_numpy(self.norm[1, s]))


# ------------------------------------------------------------------------------------------------ MLP


@dataclass(frozen=True)
class MlpBackbone:
    """Backbone weights ``fc0..fcN`` (``[out, in]``) and their biases. The heads it was trained with
    are not kept: every head, dense or masked, is fitted the same way (ridge, :func:`fit_head`)."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    seed: int
    name: str = "mlp"
    default_tile_size: int = 64

    @property
    def layers(self) -> list[str]:
        return sorted(self.weights, key=lambda n: int(n[2:]))

    def split(self) -> DigitsSplit:
        return load_split(self.seed)

    def specialise(self, weights: Mapping[str, np.ndarray], split: DigitsSplit) -> None:
        return None

    def features(self, weights: Mapping[str, np.ndarray], norm: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """Backbone output (ReLU after every layer) for inputs ``x``."""
        h = torch.from_numpy(np.ascontiguousarray(x))
        with torch.no_grad():
            for name in self.layers:
                h = torch.relu(h @ torch.from_numpy(weights[name]).T + torch.from_numpy(self.biases[name]))
        return h.numpy()

    def importance(self, task: str, head: Head, split: DigitsSplit, batch: int = 256) -> dict[str, np.ndarray]:
        ws = {n: torch.from_numpy(self.weights[n].copy()).requires_grad_(True) for n in self.layers}
        bs = {n: torch.from_numpy(self.biases[n]) for n in self.layers}
        hw, hb = (torch.from_numpy(a) for a in head[:2])
        x = torch.from_numpy(split.x_train)
        y = torch.from_numpy(head_labels(task, split.d_train))
        score = {n: torch.zeros_like(w) for n, w in ws.items()}
        for start in range(0, len(x), batch):
            h = x[start : start + batch]
            for n in self.layers:
                h = torch.relu(h @ ws[n].T + bs[n])
            loss = torch.nn.functional.cross_entropy(h @ hw.T + hb, y[start : start + batch])
            grads = torch.autograd.grad(loss, [ws[n] for n in self.layers])
            for n, g in zip(self.layers, grads, strict=True):
                score[n] += (ws[n].detach() * g).abs()
        return {n: s.numpy() for n, s in score.items()}


def _config_key(hidden: tuple[int, ...], epochs: int, batch: int, seed: int) -> str:
    text = json.dumps({"hidden": hidden, "epochs": epochs, "batch": batch, "seed": seed, "tasks": sorted(HEAD_CLASSES), "v": 1})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_mlp(
    cache_dir: Path | None,
    hidden: tuple[int, ...] = (2048, 2048, 1024),
    epochs: int = 6,
    batch: int = 128,
    seed: int = 0,
    split: DigitsSplit | None = None,
) -> MlpBackbone:
    """Train (or load from ``cache_dir``) the MLP backbone and the four heads jointly."""
    path = cache_dir / f"multitask-{_config_key(hidden, epochs, batch, seed)}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        return _from_tensors(load_file(str(path)), seed)
    split = split or load_split(seed)
    torch.manual_seed(seed)
    dims = (64, *hidden)
    backbone = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in pairwise(dims))
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(hidden[-1], k) for t, k in sorted(HEAD_CLASSES.items())})
    opt = torch.optim.Adam(list(backbone.parameters()) + list(heads.parameters()), lr=2e-3)
    x = torch.from_numpy(split.x_train)
    labels = {t: torch.from_numpy(head_labels(t, split.d_train)) for t in HEAD_CLASSES}
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="train multitask backbone", file=sys.stderr, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            feats = x[idx]
            for layer in backbone:
                feats = torch.relu(layer(feats))
            loss = sum(torch.nn.functional.cross_entropy(heads[t](feats), labels[t][idx]) for t in sorted(HEAD_CLASSES))
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


def _from_tensors(tensors: Mapping[str, np.ndarray], seed: int) -> MlpBackbone:
    weights: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        parts = name.split(".")
        if parts[0] == "backbone":
            (weights if parts[2] == "weight" else biases)[parts[1]] = np.ascontiguousarray(value, dtype=np.float32)
    return MlpBackbone(weights, biases, seed)
