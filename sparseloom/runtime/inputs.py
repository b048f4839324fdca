"""Real model inputs for replayed requests: held-out examples of zoo models, batch 1, in turn."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

from stitching import zoo


def zoo_examples(zoo_name: str, cache_dir: Path | None = None, limit: int = 64) -> list[tuple[torch.Tensor, ...]]:
    """Batch-1 inputs from a zoo model's evaluation set (its example input when it has none)."""
    base = zoo.load(zoo_name, cache_dir)
    ev = zoo.evaluator(zoo_name, base, cache_dir, limit)
    if ev is None:
        return [tuple(base.example_inputs)]
    n = int(ev.inputs[0].shape[0])
    return [
        tuple(fit(x[i : i + 1], like) for x, like in zip(ev.inputs, base.example_inputs)) for i in range(n)
    ]


def fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` zero-padded or cut to ``like``'s shape: blocks are compiled for the example input's static shape
    (zero is the padding token and mask value of the text models)."""
    if x.shape == like.shape:
        return x
    out = torch.zeros(like.shape, dtype=x.dtype)
    region = tuple(slice(0, min(a, b)) for a, b in zip(x.shape, like.shape))
    out[region] = x[region]
    return out


def cycling(examples: Mapping[str, list[tuple[torch.Tensor, ...]]]) -> Callable[[str], tuple[torch.Tensor, ...]]:
    """A function giving each task's examples one after the other, round and round."""
    its: dict[str, Iterator[tuple[torch.Tensor, ...]]] = {k: itertools.cycle(v) for k, v in examples.items()}
    return lambda task: next(its[task])
