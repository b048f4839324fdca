"""NPU offload decisions through Relax BYOC pattern tables.

An NPU declares the operator families (``ops``) and dtypes it supports. We
turn that declaration into a Relax pattern table (``tvm.relax.dpl``) and run
``FuseOpsByPattern`` with codegen annotation: every matched region becomes a
function marked for the NPU, everything else stays in the main function and
falls back to the CPU, as Band's fallback sub-graphs do. The result lists
each region with its operators, FLOPs and bytes so the cost model can price
the offloaded part on the NPU and the rest on the CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

# Operator family (YAML ``ops``) -> Relax operators that implement it.
OP_FAMILIES: dict[str, tuple[str, ...]] = {
    "conv2d": ("relax.nn.conv2d",),
    "linear": ("relax.matmul",),
    "matmul": ("relax.matmul",),
    "add": ("relax.add",),
    "mul": ("relax.multiply",),
    "relu": ("relax.nn.relu",),
    "gelu": ("relax.nn.gelu", "relax.nn.gelu_tanh"),
    "softmax": ("relax.nn.softmax",),
    "layer_norm": ("relax.nn.layer_norm",),
    "batch_norm": ("relax.nn.batch_norm",),
    "pool": ("relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d"),
    "reshape": ("relax.reshape", "relax.permute_dims"),
    "concat": ("relax.concat",),
    "attention": ("relax.nn.attention",),
}
_ANCHORS = ("relax.nn.conv2d", "relax.matmul")
_DTYPES = {"float32": "fp32", "float16": "fp16", "int8": "int8"}
CODEGEN = "sparseloom_npu"


@dataclass(frozen=True)
class OpCost:
    """One Relax operator of a block with its work and traffic."""

    op: str
    flops: float
    bytes: int


@dataclass(frozen=True)
class Region:
    """A group of operators that runs on one processor: the NPU (offloaded) or the CPU fallback."""

    name: str
    offloaded: bool
    ops: tuple[OpCost, ...]

    @property
    def flops(self) -> float:
        return sum(o.flops for o in self.ops)

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.ops)


@dataclass(frozen=True)
class OffloadPlan:
    """How one block splits between an NPU and its CPU fallback."""

    processor: str
    regions: tuple[Region, ...]

    @property
    def offloaded_ops(self) -> tuple[str, ...]:
        return tuple(o.op for r in self.regions if r.offloaded for o in r.ops)

    @property
    def fallback_ops(self) -> tuple[str, ...]:
        return tuple(o.op for r in self.regions if not r.offloaded for o in r.ops)

    @property
    def offloaded_flop_fraction(self) -> float:
        total = sum(r.flops for r in self.regions)
        return sum(r.flops for r in self.regions if r.offloaded) / total if total else 0.0

    @property
    def transitions(self) -> int:
        """Hand-overs between NPU and CPU along the region sequence (each costs a transfer)."""
        flags = [r.offloaded for r in self.regions]
        return sum(1 for a, b in itertools.pairwise(flags) if a != b)


def pattern_table(ops: tuple[str, ...], dtypes: tuple[str, ...]) -> list[relax.transform.FusionPattern]:
    """Fusion patterns for the declared operator families, anchors with epilogues first."""
    relax_ops = sorted({r for fam in ops for r in OP_FAMILIES.get(fam, ())})
    check = _dtype_check(dtypes)
    table: list[relax.transform.FusionPattern] = []
    epilogues = [r for r in ("relax.add", "relax.nn.relu") if r in relax_ops]
    for anchor in (a for a in _ANCHORS if a in relax_ops):
        # Longest chains first: FuseOpsByPattern gives earlier patterns priority.
        base = is_op(anchor)(wildcard(), wildcard())
        if epilogues == ["relax.add", "relax.nn.relu"]:
            table.append(_pattern(f"{anchor}_add_relu", is_op("relax.nn.relu")(is_op("relax.add")(base, wildcard())), check))
        for epi in epilogues:
            chained = is_op(epi)(base) if epi == "relax.nn.relu" else is_op(epi)(base, wildcard())
            table.append(_pattern(f"{anchor}_{epi.split('.')[-1]}", chained, check))
        table.append(_pattern(anchor, base, check))
    for op in relax_ops:
        if op in _ANCHORS:
            continue
        table.append(_pattern(op, is_op(op)(*[wildcard() for _ in range(_arity(op))]), check))
    return table


def _arity(op: str) -> int:
    return {"relax.add": 2, "relax.multiply": 2, "relax.nn.layer_norm": 3, "relax.nn.batch_norm": 5,
            "relax.reshape": 2, "relax.nn.attention": 3}.get(op, 1)


def _pattern(name: str, pat: Any, check: Callable[[Any], bool]) -> relax.transform.FusionPattern:
    return relax.transform.FusionPattern(f"{CODEGEN}.{name.replace('relax.', '').replace('.', '_')}", pat, {}, check)


def _dtype_check(dtypes: tuple[str, ...]) -> Callable[[Any], bool]:
    def check(ctx: Any) -> bool:
        dtype = _DTYPES.get(str(ctx.annotated_expr["root"].ty.dtype) if "root" in ctx.annotated_expr else "", None)
        return dtype is None or dtype in dtypes

    return check


def partition(mod: tvm.IRModule, processor_name: str, ops: tuple[str, ...], dtypes: tuple[str, ...],
              compute_dtype: str = "fp32") -> tuple[tvm.IRModule, OffloadPlan]:
    """Partition ``mod`` for an NPU; ``compute_dtype`` is the dtype the block runs in (int8 when quantised)."""
    if compute_dtype not in dtypes:
        # Nothing of this block can run on the NPU in this dtype: everything falls back.
        table: list[relax.transform.FusionPattern] = []
    else:
        table = pattern_table(ops, dtypes)
    parted = relax.transform.FuseOpsByPattern(table, bind_constants=False, annotate_codegen=True)(mod) if table else mod
    return parted, OffloadPlan(processor=processor_name, regions=tuple(_regions(parted)))


def _regions(mod: tvm.IRModule) -> list[Region]:
    regions: list[Region] = []
    fallback: list[OpCost] = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not isinstance(call, relax.Call):
                continue
            if isinstance(call.op, tvm.ir.GlobalVar):
                func = mod[call.op]
                if func.attrs is not None and "Codegen" in func.attrs:
                    if fallback:
                        regions.append(Region(f"cpu{len(regions)}", False, tuple(fallback)))
                        fallback = []
                    regions.append(Region(call.op.name_hint, True, tuple(_ops_in(func))))
                    continue
            cost = _op_cost(call)
            if cost is not None:
                fallback.append(cost)
    if fallback:
        regions.append(Region(f"cpu{len(regions)}", False, tuple(fallback)))
    return regions


def _ops_in(func: relax.Function) -> list[OpCost]:
    found: list[OpCost] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            cost = _op_cost(expr)
            if cost is not None:
                found.append(cost)

    relax.analysis.post_order_visit(func.body, visit)
    return found


def _shape(expr: Any) -> list[int] | None:
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None:
        return None
    try:
        return [int(s) for s in shape]
    except (TypeError, ValueError):
        return None


def _numel(shape: list[int] | None) -> int:
    n = 1
    for s in shape or []:
        n *= s
    return n


def _itemsize(expr: Any) -> int:
    dtype = str(getattr(getattr(expr, "ty", None), "dtype", "float32"))
    return {"float32": 4, "float16": 2, "int8": 1, "int32": 4, "int64": 8, "bool": 1}.get(dtype, 4)


def _op_cost(call: relax.Call) -> OpCost | None:
    if not isinstance(call.op, tvm.ir.Op):
        return None
    name = str(call.op.name)
    out = _shape(call)
    if out is None:
        return None
    tensor_args = [a for a in call.args if _shape(a) is not None]
    moved = sum(_numel(_shape(a)) * _itemsize(a) for a in tensor_args) + _numel(out) * _itemsize(call)
    flops = float(_numel(out))
    if name == "relax.matmul" and len(tensor_args) == 2:
        k = _shape(tensor_args[0])[-1]  # type: ignore[index]
        flops = 2.0 * _numel(out) * k
    elif name == "relax.nn.conv2d" and len(tensor_args) == 2:
        w = _shape(tensor_args[1]) or [1, 1, 1, 1]
        flops = 2.0 * _numel(out) * w[1] * w[2] * w[3]
    elif name in ("relax.reshape", "relax.permute_dims"):
        flops = 0.0
    return OpCost(op=name.replace("relax.", ""), flops=flops, bytes=moved)
