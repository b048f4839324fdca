"""Profiler: measured and modelled entries, persistence, no recompiles on a second run, load costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import tvm

from backends.base import CompileOptions
from backends.block import BlockSpec, make_block
from backends.cache import CompileCache
from backends.processor import SoCSpec
from backends.profile import Profile
from backends.profiler import Profiler, measure_load_ms, peak_activation_bytes, time_ms


def test_profile_measures_models_persists_and_reuses_the_cache(cnn_block: BlockSpec, soc: SoCSpec,
                                                               tmp_path: Path) -> None:
    blocks = [cnn_block, make_block("lin", torch.nn.Linear(64, 64), (torch.randn(8, 64),)),
              make_block("lin2", torch.nn.Linear(64, 128), (torch.randn(8, 64),))]
    cache = tmp_path / "cache"
    first_options = CompileOptions(cache=CompileCache(cache))
    profile = Profiler(soc, first_options, repeats=5, warmup=1, progress=False).profile(blocks)
    # host TVM + GPU codegen per block, plus the hand-over probe on host TVM; torch compiles nothing
    assert first_options.cache.compiles == 2 * len(blocks) + 1

    entry = profile.entry(cnn_block.digest, "host-cpu")
    assert entry.source == "measured" and entry.tvm_version == tvm.__version__ and entry.threads == 1
    assert entry.latency_ms > 0 and entry.latency_p90_ms >= entry.latency_ms and entry.repeats == 5
    assert entry.weight_bytes == cnn_block.weight_bytes and entry.activation_bytes > 0
    assert profile.entry(cnn_block.digest, "host-torch").executor == "torch"
    gpu = profile.entry(cnn_block.digest, "gpu")
    assert gpu.source == "modelled" and "roofline" in gpu.device and gpu.latency_iqr_ms == 0.0

    kinds = {(t.src, t.dst): t.source for t in profile.transfers}
    assert kinds[("host-cpu", "host-torch")] == "measured" and kinds[("host-cpu", "gpu")] == "modelled"
    assert {x.source for x in profile.loads} == {"measured", "modelled"}

    path = tmp_path / "profile.json"
    profile.save(path)
    assert Profile.load(path) == profile
    assert json.loads(path.read_text())["entries"][0]["latency_ms"] > 0

    second_options = CompileOptions(cache=CompileCache(cache))
    Profiler(soc, second_options, repeats=3, warmup=1, progress=False).profile(blocks)
    assert second_options.cache.compiles == 0


def test_profile_load_rejects_other_format(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format_version": 99, "soc": "x", "entries": []}))
    with pytest.raises(ValueError):
        Profile.load(path)


def test_timing_statistics_are_ordered() -> None:
    timing = time_ms(lambda: sum(range(1000)), repeats=20, warmup=2)
    assert 0 < timing.median_ms <= timing.p90_ms and timing.iqr_ms >= 0 and timing.repeats == 20


def test_peak_activation_counts_intermediates() -> None:
    block = make_block("mlp", torch.nn.Sequential(torch.nn.Linear(16, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 4)),
                       (torch.randn(2, 16),))
    peak = peak_activation_bytes(block)
    hidden = 2 * 1024 * 4
    assert hidden <= peak <= 4 * hidden + block.input_bytes


def test_load_cost_reads_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * (4 << 20))
    assert measure_load_ms(path, repeats=2) > 0


def test_absent_processor_without_fp32_models_fp32_blocks_as_fp16_or_skips_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from backends.base import CompileOptions
    from backends.block import make_block
    from backends.cache import CompileCache
    from backends.processor import PeakRates, ProcessorSpec, SoCSpec, TransferSpec
    from backends.profiler import Profiler

    def dsp(name: str, dtypes: tuple[str, ...], fp16: float) -> ProcessorSpec:
        return ProcessorSpec(name=name, kind="dsp", target={"kind": "llvm", "mtriple": "hexagon", "mcpu": "hexagonv68"},
                             peak_gops=PeakRates(fp32=0.0, fp16=fp16, int8=100.0), memory_bandwidth_gbps=10.0,
                             dtypes=dtypes, source="test")

    soc = SoCSpec(name="s", memory_mb=1024, storage_read_gbps=1.0, transfer=TransferSpec(latency_us=10, bandwidth_gbps=10),
                  processors=(dsp("hvx", ("fp16", "int8"), 50.0), dsp("i8", ("int8",), 0.0)), source="test")
    block = make_block("mlp", torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()), (torch.randn(1, 64),))
    profile = Profiler(soc, CompileOptions(cache=CompileCache(tmp_path)), progress=False,
                       compile_absent=False).profile([block])
    by_proc = {e.processor: e for e in profile.entries}
    assert set(by_proc) == {"hvx"}  # an int8-only unit cannot run an fp32 block
    assert "as fp16" in by_proc["hvx"].device and by_proc["hvx"].source == "modelled"


def test_modelled_entries_are_bit_identical_under_cpu_load(cnn_block: BlockSpec, tmp_path: Path) -> None:
    """An absent SoC's profile depends only on the SoC file, the blocks and the code: computed
    again while another process keeps a core busy, every modelled latency is the same float."""
    import subprocess
    import sys

    from sparseloom.workload import load_workload

    orin = load_workload(Path(__file__).parents[2] / "workloads/socs/jetson_orin_agx.yaml").soc
    assert orin is not None
    blocks = [cnn_block, make_block("lin", torch.nn.Linear(64, 64), (torch.randn(8, 64),))]

    def modelled() -> dict[tuple[str, str], float]:
        options = CompileOptions(cache=CompileCache(tmp_path / "cache"))
        profile = Profiler(orin, options, repeats=3, warmup=1, progress=False, compile_absent=False).profile(blocks)
        assert {e.source for e in profile.entries} == {"modelled"}
        assert all("published result" in e.device for e in profile.entries)
        return {(e.digest, e.processor): e.latency_ms for e in profile.entries}

    quiet = modelled()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = modelled()
    finally:
        hog.kill()
    assert loaded == quiet and len(quiet) == len(blocks) * len(orin.processors)
