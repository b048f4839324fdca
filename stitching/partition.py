"""Partition: cut a base model (a chain of units) into blocks with fixed interfaces.

The cut is the user's choice: N blocks of balanced FLOPs, or explicit
boundaries (the unit names after which to cut). Each block records its
interface (input/output shapes and dtypes), FLOPs, parameter bytes and
activation bytes, measured on the model's example input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stitching.units import Factories, Unit, build_unit


@dataclass(frozen=True)
class TensorSpec:
    """Shape (batch of the example input included) and dtype of one interface tensor."""

    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, t: torch.Tensor) -> TensorSpec:
        return cls(tuple(int(d) for d in t.shape), str(t.dtype).removeprefix("torch."))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


class BlockModule(nn.Module):
    """A runnable block: consecutive units. ``forward(*inputs)`` returns a tensor or a tuple."""

    def __init__(self, units: Sequence[Unit]) -> None:
        super().__init__()
        self.units = nn.ModuleList(units)

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xs = inputs
        for unit in self.units:
            xs = unit(*xs)
        return xs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        xs = self.run(*inputs)
        return xs[0] if len(xs) == 1 else xs

    def unit_specs(self) -> list[dict[str, Any]]:
        return [{"kind": u.kind, "config": u.config} for u in self.units]

    @classmethod
    def rebuild(cls, unit_specs: Sequence[dict[str, Any]], state: dict[str, torch.Tensor],
                factories: Factories | None = None) -> BlockModule:
        """Rebuild from unit specs and a state dict (strict: every tensor must fit)."""
        block = cls([build_unit(s["kind"], s["config"], factories) for s in unit_specs])
        block.load_state_dict(state, strict=True)
        return block.eval()


class BaseModel:
    """A dense model as a chain of named units, with an example input (batch 1)."""

    def __init__(
        self,
        name: str,
        units: Sequence[tuple[str, Unit]],
        example_inputs: tuple[torch.Tensor, ...],
        reference: nn.Module | None = None,
    ) -> None:
        """``reference`` is the model as its author wrote it, when that is not simply the chain of units."""
        names = [n for n, _ in units]
        if len(set(names)) != len(names):
            raise ValueError(f"unit names of {name} are not unique: {names}")
        self.name = name
        self.unit_names: tuple[str, ...] = tuple(names)
        self.whole = BlockModule([u for _, u in units]).eval()
        self.example_inputs = example_inputs
        self.reference = reference

    @property
    def units(self) -> list[Unit]:
        return list(self.whole.units)  # type: ignore[arg-type]

    def unit_flops(self) -> list[int]:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.whole(*self.example_inputs)
        counts = counter.get_flop_counts()
        return [int(sum(counts.get(f"BlockModule.units.{i}", {}).values())) for i in range(len(self.unit_names))]


@dataclass(frozen=True)
class Cut:
    """A partition: for each block, the half-open range of unit indices it holds."""

    ranges: tuple[tuple[int, int], ...]


def balanced_cut(flops: Sequence[int], blocks: int) -> Cut:
    """Split units into ``blocks`` contiguous runs, minimising the largest block's FLOPs, then the spread."""
    n = len(flops)
    if not 1 <= blocks <= n:
        raise ValueError(f"cannot cut {n} units into {blocks} blocks; choose 1..{n}")
    prefix = [0]
    for f in flops:
        prefix.append(prefix[-1] + f)
    inf = (float("inf"), float("inf"))
    # best[k][i]: (max, sum of squares) for the first i units in k blocks.
    best = [[inf] * (n + 1) for _ in range(blocks + 1)]
    back = [[0] * (n + 1) for _ in range(blocks + 1)]
    best[0][0] = (0.0, 0.0)
    for k in range(1, blocks + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                prev = best[k - 1][j]
                if prev == inf:
                    continue
                size = float(prefix[i] - prefix[j])
                cand = (max(prev[0], size), prev[1] + size * size)
                if cand < best[k][i]:
                    best[k][i], back[k][i] = cand, j
    ranges: list[tuple[int, int]] = []
    i = n
    for k in range(blocks, 0, -1):
        j = back[k][i]
        ranges.append((j, i))
        i = j
    return Cut(tuple(reversed(ranges)))


def boundary_cut(unit_names: Sequence[str], boundaries: Sequence[str]) -> Cut:
    """Cut after each named unit (names in model order; the last unit needs no name)."""
    index = {name: i for i, name in enumerate(unit_names)}
    unknown = [b for b in boundaries if b not in index]
    if unknown:
        raise ValueError(
            f"unknown boundary unit(s) {', '.join(unknown)}; units are: {', '.join(unit_names)}"
        )
    ends = [index[b] + 1 for b in boundaries]
    if ends != sorted(set(ends)):
        raise ValueError(f"boundaries must be distinct and in model order: {list(boundaries)}")
    if ends and ends[-1] == len(unit_names):
        ends = ends[:-1]
    starts = [0] + ends
    return Cut(tuple(zip(starts, ends + [len(unit_names)])))


def cut_model(base: BaseModel, blocks: int | None = None, boundaries: Sequence[str] | None = None) -> Cut:
    """The user's partition: exactly one of ``blocks`` (a count) or ``boundaries`` (unit names)."""
    if (blocks is None) == (boundaries is None):
        raise ValueError("give exactly one of blocks (a count) or boundaries (unit names)")
    if blocks is not None:
        return balanced_cut(base.unit_flops(), blocks)
    return boundary_cut(base.unit_names, boundaries or ())


def split(base: BaseModel, cut: Cut) -> list[BlockModule]:
    """The dense blocks of ``base`` under ``cut`` (sharing the base model's unit objects)."""
    units = base.units
    return [BlockModule(units[a:b]).eval() for a, b in cut.ranges]


@dataclass(frozen=True)
class BlockStats:
    """What running a block on its example input tells: interface and cost."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    flops: int
    effective_flops: int
    param_bytes: int
    activation_bytes: int
    nonzero_fraction: float


def measure(block: BlockModule, inputs: tuple[torch.Tensor, ...]) -> tuple[BlockStats, tuple[torch.Tensor, ...]]:
    """Run ``block`` once under a FLOP counter; return its stats and outputs.

    ``flops`` counts what dense execution does (matmul/conv as counted by
    ``torch.utils.flop_counter``); ``effective_flops`` scales each weight
    layer by its fraction of non-zero weights, i.e. what a sparse kernel that
    skips zeros would do.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = block(*inputs)  # through forward, so the counter sees module names
    outputs = out if isinstance(out, tuple) else (out,)
    counts = counter.get_flop_counts()
    total = int(counter.get_total_flops())
    saved = 0.0
    for name, layer in block.named_modules():
        if name and isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            layer_flops = sum(counts.get(f"BlockModule.{name}", {}).values())
            w = layer.weight.detach()
            saved += layer_flops * (1.0 - int(torch.count_nonzero(w)) / w.numel())
    state = block.state_dict()
    weights = [t for t in state.values() if t.is_floating_point() or t.dtype == torch.int8]
    numel = sum(t.numel() for t in weights)
    nonzero = sum(int(torch.count_nonzero(t)) for t in weights)
    return (
        BlockStats(
            inputs=tuple(TensorSpec.of(t) for t in inputs),
            outputs=tuple(TensorSpec.of(t) for t in outputs),
            flops=total,
            effective_flops=round(total - saved),
            param_bytes=sum(t.numel() * t.element_size() for t in state.values()),
            activation_bytes=sum(t.numel() * t.element_size() for t in outputs),
            nonzero_fraction=nonzero / numel if numel else 1.0,
        ),
        outputs,
    )


def chain(blocks: Sequence[nn.Module], inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Run blocks one after the other (any modules with the block calling convention)."""
    xs = inputs
    with torch.no_grad():
        for block in blocks:
            out = block(*xs)
            xs = out if isinstance(out, tuple) else (out,)
    return xs


def check_chain(base: BaseModel, blocks: Sequence[nn.Module], atol: float = 1e-5) -> float:
    """Max absolute difference between chained blocks and the whole model; ValueError above ``atol``."""
    with torch.no_grad():
        if base.reference is not None:
            out = base.reference(*base.example_inputs)
            whole = out if isinstance(out, tuple) else (out,)
        else:
            whole = base.whole.run(*base.example_inputs)
    chained = chain(blocks, base.example_inputs)
    if len(whole) != len(chained):
        raise ValueError(f"chained blocks give {len(chained)} outputs, the whole model {len(whole)}")
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(whole, chained))
    if diff > atol:
        raise ValueError(f"chained blocks differ from the whole model by {diff:g} (> {atol:g})")
    return diff
