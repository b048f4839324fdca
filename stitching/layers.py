"""Weight layers that a block is built from: plain float or int8-weight Linear/Conv.

An int8 variant stores its weights as int8 with one float scale per output
channel and dequantizes in ``forward``; the module stays exportable with
``torch.export`` and its tensors on disk really are int8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuantLinear(nn.Module):
    """Linear layer with int8 weights (symmetric, per output channel)."""

    weight_q: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight_q", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def dequantized(self) -> torch.Tensor:
        return self.weight_q.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized(), self.bias)


class QuantConv(nn.Module):
    """1-d or 2-d convolution with int8 weights (symmetric, per output channel)."""

    weight_q: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.stride, self.padding, self.groups = dim, stride, padding, groups
        shape = (out_channels, in_channels // groups) + (kernel_size,) * dim
        self.register_buffer("weight_q", torch.zeros(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def dequantized(self) -> torch.Tensor:
        scale = self.weight_scale.reshape((-1,) + (1,) * (self.weight_q.dim() - 1))
        return self.weight_q.float() * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim == 1:
            return F.conv1d(x, self.dequantized(), self.bias, self.stride, self.padding, 1, self.groups)
        return F.conv2d(x, self.dequantized(), self.bias, self.stride, self.padding, 1, self.groups)


WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d | QuantLinear | QuantConv


def linear(in_features: int, out_features: int, int8: bool, bias: bool = True) -> nn.Module:
    if int8:
        return QuantLinear(in_features, out_features, bias)
    return nn.Linear(in_features, out_features, bias)


def conv(
    dim: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    int8: bool,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    if int8:
        return QuantConv(dim, in_channels, out_channels, kernel_size, stride, padding, groups, bias)
    cls = nn.Conv1d if dim == 1 else nn.Conv2d
    return cls(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)


def float_weight_layers(module: nn.Module) -> list[nn.Linear | nn.Conv1d | nn.Conv2d]:
    """The float Linear/Conv layers whose weights pruning may zero (embeddings and norms excluded)."""
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8 quantization: (int8 weights, float scales)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale.float()
