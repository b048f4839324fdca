"""Prune a dense block into a sparse variant, keeping its input/output interface.

Kinds (one small function each, composed in :func:`prune_block`):

- ``structured``: whole channels, attention heads and FFN rows removed; the
  tensors really shrink. Every unit, the zoo's and a user's module alike, is pruned through
  torch-pruning's dependency graph (:mod:`stitching.structural`), traced on the block's example
  inputs;
- ``unstructured``: per-layer magnitude pruning;
- ``2:4``: in each group of 4 consecutive input weights, the 2 largest stay;
- ``block``: square tiles of the weight matrix with the smallest norm are zeroed;
- ``int8``: symmetric per-output-channel int8 weights.

Only Linear/Conv weights are pruned; embeddings, norms and biases stay dense.
No fine-tuning here; the pool refits a pruned block by least squares on calibration data where the
model has some (:mod:`stitching.reconstruct`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from stitching.layers import float_weight_layers, quantize_weight
from stitching.partition import BlockModule
from stitching.structural import IMPORTANCE
from stitching.units import Unit

Pattern = Literal["dense", "structured", "unstructured", "2:4", "block", "int8"]
PATTERNS: tuple[str, ...] = ("dense", "structured", "unstructured", "2:4", "block", "int8")


@dataclass(frozen=True)
class Recipe:
    """How to make one variant: a pattern, its level (fraction removed), the tile size for ``block``
    and, for ``structured``, the norm that ranks channels (``l1`` or ``l2``)."""

    pattern: Pattern
    level: float = 0.0
    block_size: int = 16
    importance: str = "l1"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown sparsity pattern {self.pattern!r}; known: {', '.join(PATTERNS)}")
        fixed = self.pattern in ("dense", "2:4", "int8")
        if fixed and self.level != 0.0:
            raise ValueError(f"pattern {self.pattern!r} has a fixed level; got level {self.level}")
        if not fixed and not 0.0 < self.level < 1.0:
            raise ValueError(f"pattern {self.pattern!r} needs a level in (0, 1); got {self.level}")
        if self.block_size < 2:
            raise ValueError(f"block_size must be at least 2; got {self.block_size}")
        if self.importance not in IMPORTANCE:
            raise ValueError(f"importance must be one of {', '.join(IMPORTANCE)}; got {self.importance!r}")
        if self.importance != "l1" and self.pattern != "structured":
            raise ValueError(f"importance ranks channels for structured pruning only, not {self.pattern!r}")

    @property
    def name(self) -> str:
        if self.pattern in ("dense", "2:4", "int8"):
            return self.pattern
        if self.pattern == "block":
            return f"block{self.block_size}-{self.level:g}"
        if self.importance != "l1":
            return f"{self.pattern}-{self.importance}-{self.level:g}"
        return f"{self.pattern}-{self.level:g}"

    @property
    def sparsity_level(self) -> float:
        """Fraction of weights removed (2:4 removes half)."""
        return 0.5 if self.pattern == "2:4" else self.level


_EXAMPLES = "structured-0.5, structured-l2-0.5, block16-0.7, 2:4, int8"


def parse_recipe(name: str) -> Recipe:
    """Inverse of :attr:`Recipe.name`, e.g. ``structured-0.5``, ``structured-l2-0.5``, ``block16-0.7``,
    ``2:4``, ``int8``."""
    if name in ("dense", "2:4", "int8"):
        return Recipe(name)  # type: ignore[arg-type]
    head, _, level = name.rpartition("-")
    try:
        value = float(level)
    except ValueError:
        raise ValueError(f"cannot read variant name {name!r}; expected e.g. {_EXAMPLES}") from None
    if head.startswith("block") and head[5:].isdigit():
        return Recipe("block", value, int(head[5:]))
    if head in ("structured", "unstructured"):
        return Recipe(head, value)  # type: ignore[arg-type]
    if head.startswith("structured-") and head[11:] in IMPORTANCE:
        return Recipe("structured", value, importance=head[11:])
    raise ValueError(f"cannot read variant name {name!r}; expected e.g. {_EXAMPLES}")


def _matrix(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def unstructured_mask(w: torch.Tensor, level: float) -> torch.Tensor:
    flat = w.abs().reshape(-1)
    drop = round(level * flat.numel())
    mask = torch.ones_like(flat, dtype=torch.bool)
    if drop:
        mask[torch.topk(flat, drop, largest=False).indices] = False
    return mask.reshape(w.shape)


def nm_mask(w: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    mat = _matrix(w).abs()
    cols = mat.shape[1] // m * m  # a ragged tail (fewer than m inputs) stays dense
    mask = torch.ones_like(mat, dtype=torch.bool)
    if cols:
        groups = mat[:, :cols].reshape(mat.shape[0], -1, m)
        drop = torch.topk(groups, m - n, dim=-1, largest=False).indices
        gmask = torch.ones_like(groups, dtype=torch.bool).scatter(-1, drop, False)
        mask[:, :cols] = gmask.reshape(mat.shape[0], cols)
    return mask.reshape(w.shape)


def block_mask(w: torch.Tensor, level: float, size: int) -> torch.Tensor:
    mat = _matrix(w)
    rows, cols = mat.shape
    tr, tc = -(-rows // size), -(-cols // size)
    padded = torch.zeros(tr * size, tc * size, dtype=mat.dtype)
    padded[:rows, :cols] = mat.abs()
    scores = padded.reshape(tr, size, tc, size).pow(2).sum(dim=(1, 3)).reshape(-1)
    drop = round(level * scores.numel())
    keep = torch.ones_like(scores, dtype=torch.bool)
    if drop:
        keep[torch.topk(scores, drop, largest=False).indices] = False
    tiles = keep.reshape(tr, 1, tc, 1).expand(tr, size, tc, size).reshape(tr * size, tc * size)
    return tiles[:rows, :cols].reshape(w.shape)


def _masked(block: BlockModule, recipe: Recipe) -> BlockModule:
    new = copy.deepcopy(block)
    with torch.no_grad():
        for layer in float_weight_layers(new):
            w = layer.weight
            if recipe.pattern == "unstructured":
                mask = unstructured_mask(w, recipe.level)
            elif recipe.pattern == "2:4":
                mask = nm_mask(w)
            else:
                mask = block_mask(w, recipe.level, recipe.block_size)
            w.mul_(mask)
    return new


def _units(block: BlockModule) -> list[Unit]:
    return [u for u in block.units if isinstance(u, Unit)]


def _structured(block: BlockModule, recipe: Recipe, inputs: tuple[torch.Tensor, ...] | None) -> BlockModule:
    if inputs is None:
        raise ValueError("structured pruning traces the block: it needs the block's example inputs")
    units: list[Unit] = []
    xs = inputs
    for unit in _units(block):
        shrunk = unit.structured(recipe.level, xs, recipe.importance)
        units.append(shrunk if shrunk is not None else copy.deepcopy(unit))
        with torch.no_grad():
            xs = unit(*xs)
    return BlockModule(units).eval()


def _int8(block: BlockModule) -> BlockModule:
    units: list[Unit] = []
    for unit in _units(block):
        config = dict(unit.config)
        if "int8" not in config:  # a unit without weight layers (pooling, embeddings)
            units.append(copy.deepcopy(unit))
            continue
        if config["int8"]:
            raise ValueError("this block is already int8")
        state: dict[str, torch.Tensor] = {}
        layers = {n: m for n, m in unit.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
        for key, value in unit.state_dict().items():
            owner, _, leaf = key.rpartition(".")
            if owner in layers and leaf == "weight":
                state[f"{owner}.weight_q"], state[f"{owner}.weight_scale"] = quantize_weight(value)
            else:
                state[key] = value.clone()
        new = unit.with_config(int8=True)
        new.load_state_dict(state, strict=True)
        units.append(new)
    return BlockModule(units).eval()


def prune_block(block: BlockModule, recipe: Recipe, inputs: tuple[torch.Tensor, ...] | None = None) -> BlockModule:
    """A new block: ``block`` turned into the variant ``recipe``. ``block`` is not modified.
    ``inputs``: the block's example inputs, which structured pruning of a user's module needs (it is
    traced by torch-pruning)."""
    if recipe.pattern == "dense":
        return copy.deepcopy(block)
    if recipe.pattern == "structured":
        return _structured(block, recipe, inputs)
    if recipe.pattern == "int8":
        return _int8(block)
    return _masked(block, recipe)
