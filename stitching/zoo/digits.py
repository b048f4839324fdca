"""``digits_cnn``: a small CNN trained here on scikit-learn's bundled 8x8 digits images.

Split: stratified 70/30 train/test with seed 0 (1257 train, 540 test images).
Training: Adam, 25 epochs, batch 64, seed 0; a few seconds on 2 cores. The
trained weights are cached as safetensors under ``<cache>/zoo/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from stitching.atomic import write_safetensors
from stitching.partition import BaseModel
from stitching.units import ConvBlock, Head, Unit
from stitching.zoo.evaluate import Evaluator

SEED = 0
EPOCHS = 15
CACHE_NAME = "digits_cnn-v1.safetensors"


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The stratified 70/30 split (seed 0): train images, test images, train labels, test labels."""
    # Imported here: scikit-learn takes a second to import and only training and evaluation need it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    return xtr, xte, ytr, yte


def _units() -> list[tuple[str, Unit]]:
    return [
        ("conv1", ConvBlock(1, 16, 16)),
        ("conv2", ConvBlock(16, 32, 16, pool=True)),
        ("conv3", ConvBlock(16, 32, 16)),
        ("head", Head("flatten", 16 * 4 * 4, 64, 10)),
    ]


def _train(base: BaseModel) -> None:
    xtr, _, ytr, _ = data()
    gen = torch.Generator().manual_seed(SEED)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    model = base.whole.train()
    # One thread: the model is tiny, and more threads only fight over a busy CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _epochs(model, x, y, gen)
    finally:
        torch.set_num_threads(threads)
    model.eval()


def _epochs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def build(cache_dir: Path) -> BaseModel:
    """The trained dense model; trains once (seed 0) and caches the weights under ``cache_dir``."""
    torch.manual_seed(SEED)
    base = BaseModel("digits_cnn", _units(), (torch.zeros(1, 1, 8, 8),))
    path = cache_dir / "zoo" / CACHE_NAME
    if path.is_file():
        base.whole.load_state_dict(load_file(path), strict=True)
    else:
        _train(base)
        write_safetensors(path, base.whole.state_dict(), {"seed": str(SEED), "epochs": str(EPOCHS)})
    base.whole.eval()
    return base


def train_images(cache_dir: Path, count: int) -> torch.Tensor:
    """The first ``count`` training images (N, 1, 8, 8), cached as safetensors under ``cache_dir``:
    a pool build that resumes after a crash then reads them in milliseconds instead of importing
    scikit-learn (seconds)."""
    path = cache_dir / "zoo" / f"digits-train-{count}.safetensors"
    if path.is_file():
        return load_file(path)["images"]
    images = torch.tensor(data()[0][:count])  # a copy in the standard layout
    write_safetensors(path, {"images": images}, {"seed": str(SEED), "split": "train"})
    return images


def calibration(cache_dir: Path, base: BaseModel, count: int) -> tuple[torch.Tensor, ...]:
    """The first ``count`` training images: the inputs the pool reconstructs pruned blocks on."""
    return (train_images(cache_dir, count),)


def evaluator(cache_dir: Path, base: BaseModel, limit: int | None) -> Evaluator:
    _, xte, _, yte = data()
    if limit is not None:
        xte, yte = xte[:limit], yte[:limit]
    return Evaluator(
        (torch.from_numpy(xte),),
        torch.from_numpy(yte),
        "top1",
        f"scikit-learn digits, held-out test split ({len(yte)} images)",
    )
