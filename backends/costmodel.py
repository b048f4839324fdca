"""Roofline cost model for processors that are not present, calibrated on the host.

A block's latency on a processor is modelled as

    launch overhead + max(effective FLOPs / (peak_dtype * compute_eff),
                          bytes moved / (bandwidth * memory_eff))

where masked sparsity patterns (unstructured, 2:4, block) skip
``level * sparsity_efficiency(pattern)`` of the work and weight traffic.
Structured pruning shrinks the tensors themselves, so its FLOPs are already
smaller and no discount applies.

By default each processor's efficiency is fitted to the public per-model results
written into its SoC file (:func:`fit_references`): modelled latencies then depend
only on committed inputs, never on the machine that computes them. Fitting to blocks
measured on the host (:func:`calibrate`) is an explicit option; :func:`leave_one_out`
reports how well that fit predicts unseen blocks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import least_squares

from backends.processor import ProcessorSpec, Reference, TransferSpec

if TYPE_CHECKING:  # the NPU partitioner imports TVM; the cost model itself must not
    from backends.npu import OffloadPlan

MASKED_PATTERNS = ("unstructured", "2:4", "block")


@dataclass(frozen=True)
class Efficiency:
    """Fraction of peak compute and bandwidth compiled code reaches, and the per-call overhead."""

    compute: float = 1.0
    memory: float = 1.0
    overhead_us: float | None = None  # None: use the processor's launch_overhead_us
    source: str = "uncalibrated"


@dataclass(frozen=True)
class CostSample:
    """What the model needs about one block, and (when measured) its true latency."""

    flops: float
    weight_bytes: int
    activation_bytes: int  # bytes of inputs and outputs moved once
    pattern: str = "dense"
    level: float = 0.0
    dtype: str = "fp32"
    latency_ms: float = float("nan")


@dataclass(frozen=True)
class LooReport:
    """Leave-one-out error of the calibrated model on measured samples."""

    mape_pct: float
    max_ape_pct: float
    errors_pct: tuple[float, ...]


def _discount(processor: ProcessorSpec, pattern: str, level: float) -> float:
    if pattern in MASKED_PATTERNS:
        return 1.0 - level * processor.sparsity.efficiency(pattern)
    return 1.0


def roofline_ms(processor: ProcessorSpec, sample: CostSample, eff: Efficiency = Efficiency()) -> float:
    """Modelled latency of one block on ``processor`` in milliseconds."""
    peak = processor.peak_gops.for_dtype(sample.dtype)
    if peak <= 0 or sample.dtype not in processor.dtypes:
        raise ValueError(f"processor {processor.name!r} has no {sample.dtype} support")
    keep = _discount(processor, sample.pattern, sample.level)
    compute_ms = sample.flops * keep / (peak * 1e9 * eff.compute) * 1e3
    moved = sample.weight_bytes * keep + sample.activation_bytes
    memory_ms = moved / (processor.memory_bandwidth_gbps * 1e9 * eff.memory) * 1e3
    overhead_us = processor.launch_overhead_us if eff.overhead_us is None else eff.overhead_us
    return overhead_us / 1e3 + max(compute_ms, memory_ms)


def fit_references(processor: ProcessorSpec, references: Sequence[Reference] | None = None) -> Efficiency:
    """One efficiency factor for compute and bandwidth, fitted to the processor's public results.

    Each reference gives ``e_i = roofline_at_peak_i / (latency_i - overhead)``; the fit is their
    geometric mean (least squares on log latency, closed form). One factor, not two, because a
    published per-model latency does not say how much of it was compute-bound and how much
    memory-bound. With no references the processor runs at its datasheet peak, and says so.
    Pure arithmetic on the SoC file: the same file gives the same efficiency on every machine.
    """
    refs = processor.references if references is None else tuple(references)
    if not refs:
        return Efficiency(source="datasheet peak: no reference results in the SoC file")
    logs = []
    for ref in refs:
        sample = CostSample(flops=ref.gop * 1e9, weight_bytes=int(ref.weight_mb * 1e6),
                            activation_bytes=int(ref.activation_mb * 1e6), dtype=ref.dtype)
        at_peak = roofline_ms(processor, sample) - processor.launch_overhead_us / 1e3
        busy = ref.latency_ms - processor.launch_overhead_us / 1e3
        if busy <= 0 or at_peak <= 0:
            raise ValueError(f"processor {processor.name!r}: reference {ref.model!r} ({ref.latency_ms} ms) "
                             f"is not longer than the launch overhead")
        logs.append(math.log(at_peak / busy))
    factor = min(1.0, math.exp(sum(logs) / len(logs)))
    names = ", ".join(sorted({r.model for r in refs}))
    return Efficiency(compute=factor, memory=factor, overhead_us=None,
                      source=f"fitted to {len(refs)} published result(s): {names}")


def fit_soc(processors: Sequence[ProcessorSpec]) -> dict[str, Efficiency]:
    """Each processor's efficiency from its own published results; a processor with none takes the
    median factor of the SoC's processors that have some (the SoC's software stack is the best
    evidence left), and datasheet peak only when no processor of the SoC has any."""
    own = {p.name: fit_references(p) for p in processors if p.references}
    if not own:
        return {p.name: fit_references(p) for p in processors}
    factor = float(np.median([e.compute for e in own.values()]))
    borrowed = Efficiency(compute=factor, memory=factor, source=f"no published result: median of {', '.join(sorted(own))}")
    return {p.name: own.get(p.name, borrowed) for p in processors}


def calibrate(processor: ProcessorSpec, samples: Sequence[CostSample]) -> Efficiency:
    """Fit compute/memory efficiency and overhead to measured samples (least squares on log latency)."""
    measured = [s for s in samples if math.isfinite(s.latency_ms) and s.latency_ms > 0]
    if len(measured) < 3:
        raise ValueError(f"calibration needs at least 3 measured samples, got {len(measured)}")
    truth = np.log([s.latency_ms for s in measured])

    def residual(x: np.ndarray) -> np.ndarray:
        eff = Efficiency(compute=math.exp(x[0]), memory=math.exp(x[1]), overhead_us=float(x[2]))
        return np.log([roofline_ms(processor, s, eff) for s in measured]) - truth

    best = None
    # The max() makes the fit non-convex; a few starts avoid a bad local minimum.
    for start in ((-2.0, -1.0), (-4.0, -3.0), (0.0, 0.0), (-6.0, -6.0)):
        x0 = np.array([start[0], start[1], min(s.latency_ms for s in measured) * 500.0])
        fit = least_squares(residual, x0, bounds=([-12.0, -12.0, 0.0], [3.0, 3.0, 1e5]))
        if best is None or fit.cost < best.cost:
            best = fit
    assert best is not None
    x = best.x
    return Efficiency(compute=math.exp(x[0]), memory=math.exp(x[1]), overhead_us=float(x[2]),
                      source=f"calibrated on {len(measured)} measured blocks")


def leave_one_out(processor: ProcessorSpec, samples: Sequence[CostSample]) -> LooReport:
    """Calibrate on all but one sample, predict it; repeat for each. Errors in percent."""
    errors = []
    for i, held in enumerate(samples):
        eff = calibrate(processor, [s for j, s in enumerate(samples) if j != i])
        errors.append(abs(roofline_ms(processor, held, eff) - held.latency_ms) / held.latency_ms * 100.0)
    return LooReport(mape_pct=float(np.mean(errors)), max_ape_pct=float(np.max(errors)), errors_pct=tuple(errors))


def transfer_ms(transfer: TransferSpec, nbytes: int) -> float:
    """Modelled time to move ``nbytes`` between two processors of an SoC."""
    return transfer.latency_us / 1e3 + nbytes / (transfer.bandwidth_gbps * 1e9) * 1e3


def offload_ms(plan: OffloadPlan, npu: ProcessorSpec, fallback: ProcessorSpec, transfer: TransferSpec,
               dtype: str, npu_eff: Efficiency = Efficiency(), cpu_eff: Efficiency = Efficiency()) -> float:
    """Latency of a block split by BYOC: offloaded regions on the NPU, the rest on the CPU, plus hand-overs."""
    total = 0.0
    for region in plan.regions:
        proc, eff = (npu, npu_eff) if region.offloaded else (fallback, cpu_eff)
        region_dtype = dtype if region.offloaded else "fp32"
        sample = CostSample(flops=region.flops, weight_bytes=0, activation_bytes=region.bytes, dtype=region_dtype)
        total += roofline_ms(proc, sample, eff)
    avg_bytes = int(np.mean([r.bytes for r in plan.regions])) if plan.regions else 0
    return total + plan.transitions * transfer_ms(transfer, avg_bytes)


@dataclass(frozen=True)
class Step:
    """One block of a stitched variant placed on a processor."""

    latency_ms: float
    processor: str
    output_bytes: int


def stitched_latency_ms(steps: Sequence[Step], transfer: TransferSpec | None = None,
                        measured_transfer_ms: dict[tuple[str, str], float] | None = None) -> float:
    """Sum of block latencies plus a transfer wherever consecutive blocks change processor.

    ``measured_transfer_ms`` (keyed by (src, dst)) overrides the SoC's transfer model where given.
    """
    total = sum(s.latency_ms for s in steps)
    for prev, nxt in itertools.pairwise(steps):
        if prev.processor == nxt.processor:
            continue
        key = (prev.processor, nxt.processor)
        if measured_transfer_ms is not None and key in measured_transfer_ms:
            total += measured_transfer_ms[key]
        elif transfer is not None:
            total += transfer_ms(transfer, prev.output_bytes)
        else:
            raise ValueError(f"no transfer cost for {key}")
    return total
