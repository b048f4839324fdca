"""``digits_resnet`` and ``digits_resnet18``: CIFAR-style ResNet-18s trained here on the digits.

The shape is ResNet-18's as used for 32x32 images (He et al., 2016; the CIFAR variant): a 3x3
stem, four stages of two basic blocks each, the last three halving the resolution and doubling
the channels, global average pooling and one linear layer.

* ``digits_resnet``: widths 16/32/64/128 (a quarter of ResNet-18's), 2.8 MB of weights, so that
  it trains on 2 cores in about 35 s; the pool, stitching and the scheduler's tests use it.
* ``digits_resnet18``: ResNet-18's own widths 64/128/256/512, 44.7 MB, about 3 minutes to train
  on 2 cores; the multi-task switching study uses it, where the bytes moved are the point.

Data: scikit-learn's bundled 8x8 digits, upsampled bilinearly to 32x32, with the same stratified
70/30 split (seed 0) as ``digits_cnn``. Training (:class:`Training`): SGD with Nesterov momentum
under a one-cycle learning rate, batch 64, seed 0, random shifts of up to 2 pixels, with batch
norm; about 35 s on 2 cores. The served model has each norm folded into its conv, and its weights
are cached as safetensors under ``<cache>/zoo/``. Its pruned variants keep their accuracy through
the pool's least-squares reconstruction on :func:`calibration` images (:mod:`stitching.reconstruct`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from stitching.atomic import write_safetensors
from stitching.partition import BaseModel
from stitching.units import BasicBlock, ConvReLU, Head, Unit
from stitching.zoo import digits
from stitching.zoo.evaluate import Evaluator

SEED = 0
SIZE = 32
WIDTHS: dict[str, tuple[int, int, int, int]] = {
    "digits_resnet": (16, 32, 64, 128),
    "digits_resnet18": (64, 128, 256, 512),
}


@dataclass(frozen=True)
class Training:
    """How the model is trained: the defaults are what the zoo caches; tests train shorter."""

    epochs: int = 6
    batch: int = 64
    lr: float = 0.1
    shift: int = 2  # pixels of random translation, on the 32x32 image
    limit: int | None = None  # training images used (None: the whole training split)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """8x8 digits (N, 1, 8, 8) to the model's 32x32 input."""
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def _units(bn: bool, widths: tuple[int, ...]) -> list[tuple[str, Unit]]:
    units: list[tuple[str, Unit]] = [("stem", ConvReLU(1, widths[0], bn=bn))]
    ch = widths[0]
    for stage, width in enumerate(widths, start=1):
        for i in range(2):
            stride = 2 if stage > 1 and i == 0 else 1
            units.append((f"layer{stage}.{i}", BasicBlock(ch, width, width, stride, bn=bn)))
            ch = width
    units.append(("head", Head("avg2d", ch, 0, 10)))
    return units


def _shifted(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    if shift == 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(base: BaseModel, training: Training = Training()) -> list[float]:
    """Train ``base`` (from :func:`fresh`) in place; returns the mean training loss of each epoch."""
    xtr, _, ytr, _ = digits.data()
    x, y = upsample(torch.from_numpy(xtr)), torch.from_numpy(ytr)
    if training.limit is not None:
        x, y = x[: training.limit], y[: training.limit]
    gen = torch.Generator().manual_seed(SEED)
    model = base.whole.train()
    steps = training.epochs * -(-len(x) // training.batch)
    opt = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=training.lr, total_steps=steps)
    losses = []
    for _ in range(training.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), training.batch):
            idx = order[i : i + training.batch]
            loss = F.cross_entropy(model(_shifted(x[idx], training.shift, gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    model.eval()
    return losses


def _base(name: str, units: list[tuple[str, Unit]]) -> BaseModel:
    return BaseModel(name, units, (torch.zeros(1, 1, SIZE, SIZE),))


def _widths(name: str) -> tuple[int, int, int, int]:
    if name not in WIDTHS:
        raise ValueError(f"unknown digits ResNet {name!r}; known: {', '.join(WIDTHS)}")
    return WIDTHS[name]


def fresh(name: str = "digits_resnet") -> BaseModel:
    """The untrained model, with batch norms for training (seed 0)."""
    torch.manual_seed(SEED)
    return _base(name, _units(True, _widths(name)))


def fold(trained: BaseModel) -> BaseModel:
    """``trained`` with every batch norm folded into its conv: the model the zoo serves."""
    units = [(name, unit.folded() if isinstance(unit, ConvReLU | BasicBlock) else unit)
             for name, unit in zip(trained.unit_names, trained.units)]
    return _base(trained.name, units)


def build(cache_dir: Path, name: str = "digits_resnet") -> BaseModel:
    """The trained dense model, norms folded; trains once (seed 0) and caches the weights under ``cache_dir``."""
    path = cache_dir / "zoo" / f"{name}-v1.safetensors"
    if path.is_file():
        base = _base(name, _units(False, _widths(name)))
        base.whole.load_state_dict(load_file(path), strict=True)
    else:
        training = Training()
        trained = fresh(name)
        train(trained, training)
        base = fold(trained)
        write_safetensors(path, base.whole.state_dict(), {"seed": str(SEED), "epochs": str(training.epochs)})
    base.whole.eval()
    return base


def build18(cache_dir: Path) -> BaseModel:
    """``digits_resnet18``: :func:`build` at ResNet-18's own widths."""
    return build(cache_dir, "digits_resnet18")


def calibration(cache_dir: Path, base: BaseModel, count: int) -> tuple[torch.Tensor, ...]:
    """The first ``count`` training images at 32x32: the inputs the pool reconstructs pruned blocks on."""
    return (upsample(digits.train_images(cache_dir, count)),)


def evaluator(cache_dir: Path, base: BaseModel, limit: int | None) -> Evaluator:
    _, xte, _, yte = digits.data()
    if limit is not None:
        xte, yte = xte[:limit], yte[:limit]
    return Evaluator(
        (upsample(torch.from_numpy(xte)),),
        torch.from_numpy(yte),
        "top1",
        f"scikit-learn digits upsampled to 32x32, held-out test split ({len(yte)} images)",
    )
