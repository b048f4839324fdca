"""The CPU rule's matmul register tile and weight packing, measured along the axes they trade.

For transformer matmul shapes (MiniLM, BERT/wav2vec2 with 49 and 64 rows), times
the kernel the rules produce (``backends.cpu_schedule.schedule_tiled_reduction``)
with the accumulator tile sized to 1/4, 1/2 (the rule), 3/4 and all of the vector
registers, each with packed and with plain weights, against torch eager's addmm.
Latencies are the minimum of 5 repeats of TVM's time evaluator and of torch
loops, measured here on one thread. Usage:

    PYTHONPATH=. python benchmarks/cpu_tiles.py [--shapes 128x384x1536,49x768x3072]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import tvm
from tvm import te

from backends.compile import make_target
from backends.cpu_schedule import ACCUMULATOR_SHARE, VectorUnit, schedule_tiled_reduction, vector_unit
from backends.processor import host_cpu

SHARES = (0.25, 0.5, 0.75, 1.0)


def kernel(m: int, k: int, n: int, width: int | None) -> tvm.tirx.PrimFunc:
    """``x @ w + b`` with ``w`` plain (k x n) or packed into ``width``-column panels."""
    x = te.placeholder((m, k), name="x")
    b = te.placeholder((n,), name="b")
    r = te.reduce_axis((0, k), "k")
    if width:
        w = te.placeholder((n // width, k, width), name="w")
        mm = te.compute((m, n), lambda i, j: te.sum(x[i, r] * w[j // width, r, j % width], axis=r), name="matmul")
    else:
        w = te.placeholder((k, n), name="w")
        mm = te.compute((m, n), lambda i, j: te.sum(x[i, r] * w[r, j], axis=r), name="matmul")
    out = te.compute((m, n), lambda i, j: mm[i, j] + b[j], name="T_add")
    return te.create_prim_func([x, w, b, out])


def time_tvm_ms(func: tvm.tirx.PrimFunc, unit: VectorUnit, target: tvm.target.Target,
                args: list[np.ndarray], want: np.ndarray) -> float:
    sch = schedule_tiled_reduction(func, unit)
    assert sch is not None
    lib = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu()
    arrays = [tvm.runtime.tensor(a, dev) for a in args] + [tvm.runtime.tensor(np.zeros_like(want), dev)]
    lib(*arrays)
    np.testing.assert_allclose(arrays[-1].numpy(), want, rtol=1e-3, atol=1e-3)
    timer = lib.mod.time_evaluator("main", dev, number=20, repeat=5, min_repeat_ms=30)
    return float(min(timer(*arrays).results)) * 1e3


def time_torch_ms(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(30):
            torch.addmm(b, x, w)
        best = min(best, (time.perf_counter() - start) / 30 * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="128x384x1536,128x1536x384,128x384x384,49x768x3072,64x3072x768")
    args = parser.parse_args()
    torch.set_num_threads(1)
    target = make_target(host_cpu("host", threads=1).target)
    unit = vector_unit(target)
    print(f"target {target}; vector unit {unit}; the rule gives the accumulators {ACCUMULATOR_SHARE:.2f} of the "
          "registers (measured, 1 thread, GFLOP/s and ratio to torch eager)")
    print(f"{'m x k x n':>16s} {'torch':>7s} " + " ".join(f"{f'{s:.2f} pk':>13s} {f'{s:.2f} plain':>13s}" for s in SHARES))
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        m, k, n = (int(v) for v in shape.split("x"))
        x, w, b = (rng.standard_normal(s).astype("float32") for s in ((m, k), (k, n), (n,)))
        want = x @ w + b
        flops = 2.0 * m * k * n
        torch_ms = time_torch_ms(*(torch.from_numpy(a) for a in (x, w, b)))
        cells = []
        for share in SHARES:
            # A register file scaled by share / ACCUMULATOR_SHARE gives the rule that share of the real one.
            scaled = VectorUnit(unit.lanes, max(1, round(unit.registers * share / ACCUMULATOR_SHARE)))
            width = scaled.register_tile(n, m)[0]
            packed = np.ascontiguousarray(w.reshape(k, n // width, width).transpose(1, 0, 2))
            for func, weights in ((kernel(m, k, n, width), packed), (kernel(m, k, n, None), w)):
                ms = time_tvm_ms(func, scaled, target, [x, weights, b], want)
                cells.append(f"{flops / ms / 1e6:6.1f} {ms / torch_ms:5.2f}x")
        print(f"{shape:>16s} {flops / torch_ms / 1e6:7.1f} " + " ".join(f"{c:>13s}" for c in cells))


if __name__ == "__main__":
    main()
