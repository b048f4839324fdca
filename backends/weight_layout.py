"""Constant matmul weights packed into the column panels the CPU register tile reads.

A ``K x N`` weight read a register tile (``width`` columns) at a time strides
across ``K`` rows of ``N`` floats: one page per row once ``N`` passes 1,024,
so the TLB thrashes (BERT's 768 x 3,072 FFN ran at 47 GFLOP/s, measured).
Packed at compile time into ``[N / width, K, width]``, each panel is one
contiguous stream (139 GFLOP/s, the same kernel). The weight is a constant, so
this costs nothing per run; activations are never packed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax, te

from backends.cpu_schedule import vector_unit


def _panel_width(target: tvm.target.Target, rows: int, columns: int) -> int:
    return vector_unit(target).register_tile(columns, rows)[0]


def packed_matmul_legalizer(target: tvm.target.Target) -> Callable[[relax.BlockBuilder, relax.Call], relax.Expr]:
    """``relax.matmul`` legalisation for ``target``: packed panels when the weight is a 2-D fp32
    constant whose columns split into whole panels; TVM's own legalisation otherwise."""
    default = tvm.ir.Op.get("relax.matmul").get_attr("FLegalize")

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        x, weight = call.args
        x_shape = getattr(x.ty, "shape", None)
        if not isinstance(weight, tvm.ir.expr.Constant) or x_shape is None or len(x_shape) < 2:
            return default(bb, call)
        w = weight.value.numpy() if hasattr(weight.value, "numpy") else None
        if w is None or w.ndim != 2 or w.dtype != np.float32 or str(x.ty.dtype) != "float32":
            return default(bb, call)
        depth, columns = w.shape
        rows = x_shape[-2]
        width = _panel_width(target, int(rows) if isinstance(rows, tvm.tirx.IntImm) else 1, columns)
        if width < 4 or columns % width != 0 or columns == width:
            return default(bb, call)
        panels = np.ascontiguousarray(w.reshape(depth, columns // width, width).transpose(1, 0, 2))

        def compute(a: te.Tensor, p: te.Tensor) -> te.Tensor:
            k = te.reduce_axis((0, depth), "k")
            return te.compute(
                (*a.shape[:-1], columns),
                lambda *idx: te.sum(a[(*idx[:-1], k)] * p[idx[-1] // width, k, idx[-1] % width], axis=k),
                name="matmul",
            )

        return bb.call_te(compute, x, relax.const(panels), primfunc_name_hint="matmul_packed")

    return legalize
