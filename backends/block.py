"""What the backends need to know about a block: module, example inputs, digest, sparsity, cost.

Plain inputs on purpose: the stitching package's block type is wired in by the
sparseloom layer, which builds a :class:`BlockSpec` from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True, eq=False)
class BlockSpec:
    """One block to compile, run, profile or estimate.

    ``digest`` identifies the block's content (sha256 of its tensors); the
    compile cache and profiles key on it. ``flops`` counts multiply and add
    as two operations for the dense computation the module performs.
    """

    name: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    digest: str
    pattern: str = "dense"
    level: float = 0.0
    dtype: str = "fp32"
    flops: float = field(default=-1.0)
    weight_bytes: int = field(default=-1)

    def __post_init__(self) -> None:
        if not self.example_inputs:
            raise ValueError(f"block {self.name!r} needs at least one example input")
        if not 0.0 <= self.level < 1.0:
            raise ValueError(f"block {self.name!r}: level must be in [0, 1), got {self.level}")
        self.module.eval()
        if self.flops < 0:
            object.__setattr__(self, "flops", count_flops(self.module, self.example_inputs))
        if self.weight_bytes < 0:
            object.__setattr__(self, "weight_bytes", tensor_bytes(self.module.state_dict()))

    @property
    def input_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.example_inputs)

    def output_bytes(self) -> int:
        with torch.no_grad():
            out = self.module(*self.example_inputs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return sum(t.numel() * t.element_size() for t in outs)


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def count_flops(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> float:
    """Floating-point operations of one forward pass (torch's flop counter, matmul/conv family)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*example_inputs)
    return float(counter.get_total_flops())


def tensor_bytes(state_dict: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state_dict.values())


def make_block(
    name: str,
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    pattern: str = "dense",
    level: float = 0.0,
    dtype: str = "fp32",
) -> BlockSpec:
    """Build a :class:`BlockSpec`, computing digest, FLOPs and weight bytes from the module."""
    module.eval()
    return BlockSpec(
        name=name,
        module=module,
        example_inputs=example_inputs,
        digest=state_dict_digest(module.state_dict()),
        pattern=pattern,
        level=level,
        dtype=dtype,
    )
