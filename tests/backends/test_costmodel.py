"""Roofline cost model: calibration recovers known efficiencies, LOO error, sparsity, stitched latency."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.costmodel import (
    CostSample,
    Efficiency,
    Step,
    calibrate,
    leave_one_out,
    roofline_ms,
    stitched_latency_ms,
    transfer_ms,
)
from backends.processor import PeakRates, ProcessorSpec, SparsitySupport, TransferSpec

PROC = ProcessorSpec(name="cpu", kind="cpu", target={"kind": "llvm"}, peak_gops=PeakRates(fp32=100.0, int8=400.0),
                     memory_bandwidth_gbps=10.0, launch_overhead_us=5.0,
                     sparsity=SparsitySupport(unstructured=0.5, nm_2_4=1.0))
TRUTH = Efficiency(compute=0.3, memory=0.6, overhead_us=40.0)


def _synthetic(n: int, seed: int = 0, noise: float = 0.0) -> list[CostSample]:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        s = CostSample(flops=float(10 ** rng.uniform(5, 9)), weight_bytes=int(10 ** rng.uniform(3, 7)),
                       activation_bytes=int(10 ** rng.uniform(3, 6)))
        t = roofline_ms(PROC, s, TRUTH) * (1.0 + noise * rng.standard_normal())
        samples.append(dataclasses.replace(s, latency_ms=t))
    return samples


def test_calibration_recovers_known_efficiencies() -> None:
    fitted = calibrate(PROC, _synthetic(24))
    assert fitted.compute == pytest.approx(TRUTH.compute, rel=0.02)
    assert fitted.memory == pytest.approx(TRUTH.memory, rel=0.02)
    assert fitted.overhead_us == pytest.approx(TRUTH.overhead_us, rel=0.05)


def test_leave_one_out_error_is_small_without_noise_and_grows_with_it() -> None:
    exact = leave_one_out(PROC, _synthetic(12))
    noisy = leave_one_out(PROC, _synthetic(12, noise=0.2))
    assert exact.mape_pct < 1.0
    assert noisy.mape_pct > exact.mape_pct and len(noisy.errors_pct) == 12


def test_calibration_needs_measurements() -> None:
    with pytest.raises(ValueError):
        calibrate(PROC, _synthetic(2))


def test_masked_sparsity_discounts_by_processor_efficiency() -> None:
    dense = CostSample(flops=1e9, weight_bytes=0, activation_bytes=0)
    eff = Efficiency(overhead_us=0.0)
    base = roofline_ms(PROC, dense, eff)
    assert roofline_ms(PROC, dataclasses.replace(dense, pattern="unstructured", level=0.8), eff) == pytest.approx(base * 0.6)
    assert roofline_ms(PROC, dataclasses.replace(dense, pattern="2:4", level=0.5), eff) == pytest.approx(base * 0.5)
    # Structured FLOPs already reflect the pruning.
    assert roofline_ms(PROC, dataclasses.replace(dense, pattern="structured", level=0.5), eff) == pytest.approx(base)
    assert roofline_ms(PROC, dataclasses.replace(dense, dtype="int8"), eff) == pytest.approx(base / 4)


def test_unsupported_dtype_is_rejected() -> None:
    proc = dataclasses.replace(PROC, dtypes=("fp32",))
    with pytest.raises(ValueError):
        roofline_ms(proc, CostSample(flops=1.0, weight_bytes=0, activation_bytes=0, dtype="int8"))


def test_stitched_latency_adds_transfers_only_on_processor_change() -> None:
    link = TransferSpec(latency_us=100.0, bandwidth_gbps=1.0)
    steps = [Step(1.0, "cpu", 1_000_000), Step(2.0, "cpu", 1_000_000), Step(3.0, "gpu", 10), Step(4.0, "cpu", 0)]
    expected = 10.0 + transfer_ms(link, 1_000_000) + transfer_ms(link, 10)
    assert stitched_latency_ms(steps, link) == pytest.approx(expected)
    assert transfer_ms(link, 1_000_000) == pytest.approx(0.1 + 1.0)
    measured = {("cpu", "gpu"): 0.25, ("gpu", "cpu"): 0.5}
    assert stitched_latency_ms(steps, measured_transfer_ms=measured) == pytest.approx(10.75)
    with pytest.raises(ValueError):
        stitched_latency_ms(steps)
