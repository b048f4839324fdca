"""Least-squares reconstruction of a pruned block from calibration data, instead of fine-tuning.

Pruning a block without retraining leaves every layer after the removed channels or weights
reading inputs it was not trained on, and small convolutional models lose most of their accuracy
(a quarter-width ResNet-18 on the digits: 98.9% dense, 10% with 40% of its inner channels gone).
He et al. (2017, "Channel Pruning for Accelerating Very Deep Neural Networks") restore it by
refitting the layer after the pruned channels so that its outputs match the dense layer's on a
few hundred calibration inputs: a linear least-squares problem, solved exactly, with no
gradient steps. Masked patterns (unstructured, 2:4, block) are refitted the same way, one output
row at a time over the weights the mask kept, so the pattern stays exactly as pruned.

Which layers: every Conv1d/Conv2d/Linear layer that pruning changed and whose outputs keep the
dense layer's shape (so the dense outputs are a target). Layers are refitted in the order the
forward pass reaches them, each on the inputs the already-refitted layers before it produce.
A layer whose output channels were pruned is left alone: its kept rows already compute what the
dense layer's did from the same input.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from stitching.partition import BlockModule

Tensors = tuple[torch.Tensor, ...]
# How many calibration inputs a zoo model hands the pool (from its training split, never the
# evaluation set). Each one gives a layer H*W patch rows (or token rows); a few hundred images fit
# every layer of the zoo's CNNs with far more rows than weights, and the refit takes seconds per
# block on 2 cores. tests/stitching/test_reconstruct.py checks the trade: fewer inputs fit the
# calibration set better and held-out data worse.
CALIBRATION_SIZE = 256
# Tikhonov weight, relative to the mean diagonal of each layer's Gram matrix, pulling the solution
# towards the pruned weights: it keeps the solve well posed when calibration patches are collinear
# (zero padding, dead ReLUs) and stops a small calibration set from being overfitted. 0 is plain
# least squares; large values return the pruned weights unchanged (tested along that axis).
RIDGE = 1e-3

Layer = nn.Conv1d | nn.Conv2d | nn.Linear
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_CHUNK = 32  # calibration inputs per chunk of the normal equations


def _layers(module: nn.Module) -> dict[str, Layer]:
    return {n: m for n, m in module.named_modules() if isinstance(m, _LAYERS)}


def _record(module: nn.Module, names: list[str], inputs: Tensors) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The input and output of each named layer when ``module`` runs on ``inputs``, in the order the
    forward pass reaches them (a layer called twice: its first call)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    layers = _layers(module)

    def hook(name: str) -> Callable[..., None]:
        def record(_: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            seen.setdefault(name, (args[0], out))
        return record

    handles = [layers[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def _rows(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as one row per output position: patches for a conv, features for a linear."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(layer, nn.Conv1d):
        x = x[..., None]
        kernel, dilation = (layer.kernel_size[0], 1), (layer.dilation[0], 1)
        padding, stride = (int(layer.padding[0]), 0), (layer.stride[0], 1)
    else:
        assert isinstance(layer, nn.Conv2d)
        kernel, dilation, padding, stride = layer.kernel_size, layer.dilation, layer.padding, layer.stride  # type: ignore[assignment]
    cols = F.unfold(x, kernel, dilation, padding, stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _targets(layer: Layer, y: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return y.reshape(-1, y.shape[-1])
    return y.movedim(1, -1).reshape(-1, y.shape[1])


def _normal_equations(layer: Layer, x: torch.Tensor, target: torch.Tensor, bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """X^T X and X^T Y, summed over chunks of the batch (a full-resolution layer has ~10^5 rows)."""
    gram: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    for i in range(0, x.shape[0], _CHUNK):
        rows = _rows(layer, x[i : i + _CHUNK]).double()
        if bias:  # the bias is fitted as the weight of a constant input
            rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype)], dim=1)
        y = _targets(layer, target[i : i + _CHUNK]).double()
        g, c = rows.T @ rows, rows.T @ y
        gram, cross = (g, c) if gram is None or cross is None else (gram + g, cross + c)
    assert gram is not None and cross is not None
    return gram, cross


def _refit(layer: Layer, x: torch.Tensor, target: torch.Tensor, ridge: float) -> None:
    """Set ``layer``'s weights (its zeros kept) and bias to the ridge least-squares fit of ``target``."""
    bias = layer.bias is not None
    w0 = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    if bias:
        assert layer.bias is not None
        w0 = torch.cat([w0, layer.bias.detach()[:, None]], dim=1)
    w0 = w0.double()
    gram, cross = _normal_equations(layer, x, target, bias)
    lam = ridge * float(gram.diagonal().mean())
    rhs = cross + lam * w0.T  # (inputs, outputs)
    keep = w0 != 0
    if bias:
        keep[:, -1] = True
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    if bool(keep.all()):
        w = torch.linalg.solve(gram + lam * eye, rhs).T
    else:
        w = torch.zeros_like(w0)
        for r in range(w0.shape[0]):
            s = keep[r].nonzero().squeeze(1)
            w[r, s] = torch.linalg.solve(gram[s][:, s] + lam * eye[: len(s), : len(s)], rhs[s, r])
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.copy_(w[:, -1].to(layer.bias.dtype))
            w = w[:, :-1]
        layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))


def reconstruct(dense: BlockModule, pruned: BlockModule, calibration: Tensors, ridge: float = RIDGE) -> BlockModule:
    """A copy of ``pruned`` whose changed layers are refitted to give ``dense``'s outputs on ``calibration``
    (the block's inputs, a batch). ``dense`` and ``pruned`` are not modified."""
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, not {ridge}")
    with one_thread():
        return _reconstructed(dense, pruned, standard(calibration), ridge)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the duration. Refitted weights are hashed into a block's digest, so
    they must not depend on the caller's thread count, nor on what set up torch's pools before (a
    multi-threaded reduction may sum in another order): the calibration activations and the refit
    run here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def standard(tensors: Tensors) -> Tensors:
    """Copies in the standard layout: a size-1 dimension's stride can make a convolution take another
    kernel, and give other low bits."""
    return tuple(torch.empty(t.shape, dtype=t.dtype).copy_(t) for t in tensors)


def _reconstructed(dense: BlockModule, pruned: BlockModule, calibration: Tensors, ridge: float) -> BlockModule:
    new = copy.deepcopy(pruned).eval()
    dense = dense.eval()
    mine, theirs = _layers(new), _layers(dense)
    changed = [
        n for n, layer in mine.items()
        if n in theirs and getattr(layer, "groups", 1) == 1 and layer.weight.shape[0] == theirs[n].weight.shape[0]
        and (layer.weight.shape != theirs[n].weight.shape or not torch.equal(layer.weight, theirs[n].weight))
    ]
    # The dense outputs in one pass; each refitted layer's inputs after the layers before it are refitted.
    for name, (_, target) in _record(dense, changed, calibration).items():
        x, out = _record(new, [name], calibration)[name]
        if target.shape != out.shape:
            continue  # its outputs are not comparable (a sequence of another length): leave it
        _refit(mine[name], x, target, ridge)
    return new
