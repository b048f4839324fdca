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
    fit_references,
    fit_soc,
    leave_one_out,
    roofline_ms,
    stitched_latency_ms,
    transfer_ms,
)
from backends.processor import PeakRates, ProcessorSpec, Reference, SparsitySupport, TransferSpec

PROC = ProcessorSpec(name="cpu", kind="cpu", target={"kind": "llvm"}, peak_gops=PeakRates(fp32=100.0, int8=400.0),
                     memory_bandwidth_gbps=10.0, launch_overhead_us=5.0,
                     sparsity=SparsitySupport(unstructured=0.5, nm_2_4=1.0), source="test")
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
    proc = PROC.model_copy(update={"dtypes": ("fp32",)})
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


def _ref(latency_ms: float, gop: float = 2.0, weight_mb: float = 1.0, dtype: str = "fp32") -> Reference:
    return Reference(model="m", dtype=dtype, gop=gop, weight_mb=weight_mb, latency_ms=latency_ms, source="test")


def test_reference_fit_reproduces_the_published_latency() -> None:
    # 2 GOP on 100 GOP/s at peak is 20 ms of compute; published 45 ms (5 us overhead) -> 20/44.995.
    proc = PROC.model_copy(update={"references": (_ref(45.0),)})
    eff = fit_references(proc)
    sample = CostSample(flops=2e9, weight_bytes=int(1e6), activation_bytes=0)
    assert roofline_ms(proc, sample, eff) == pytest.approx(45.0, rel=1e-12)
    assert "1 published result" in eff.source


def test_reference_fit_is_the_geometric_mean_and_capped_at_peak() -> None:
    two = PROC.model_copy(update={"references": (_ref(20.005), _ref(80.005))})
    assert fit_references(two).compute == pytest.approx(0.5, rel=1e-9)  # sqrt(1 x 0.25)
    faster_than_peak = PROC.model_copy(update={"references": (_ref(10.0),)})
    assert fit_references(faster_than_peak).compute == 1.0


def test_processors_without_results_borrow_the_socs_median_else_run_at_peak() -> None:
    a = PROC.model_copy(update={"name": "a", "references": (_ref(40.005),)})   # 0.5
    b = PROC.model_copy(update={"name": "b", "references": (_ref(200.005),)})  # 0.1
    c = PROC.model_copy(update={"name": "c"})
    effs = fit_soc([a, b, c])
    assert effs["c"].compute == pytest.approx(0.3, rel=1e-9) and "median" in effs["c"].source
    assert fit_soc([c])["c"].compute == 1.0 and "datasheet peak" in fit_soc([c])["c"].source


def test_a_reference_shorter_than_the_launch_overhead_is_refused() -> None:
    with pytest.raises(ValueError, match="launch overhead"):
        fit_references(PROC.model_copy(update={"references": (_ref(0.004),)}))
