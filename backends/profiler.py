"""Measure blocks where their processor is present; model them where it is not.

:func:`time_ms` times repeated runs after warm-up; :func:`peak_activation_bytes`
tracks live tensors during one eager run; :func:`measure_load_ms` reads a
weight file after evicting it from the page cache; :class:`Profiler` puts
these together per (block, processor) and calibrates the cost model on the
measured entries before estimating the others.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tvm
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm import tqdm

from backends.base import CompiledBlock, CompileOptions, Runner
from backends.block import BlockSpec, make_block
from backends.costmodel import (
    CostSample,
    Efficiency,
    calibrate,
    fit_soc,
    offload_ms,
    roofline_ms,
    transfer_ms,
)
from backends.processor import ProcessorSpec, SoCSpec, host_cpu
from backends.profile import LoadCost, Profile, ProfileEntry, TransferCost
from backends.tvm_backends import backend_for, plan_only, runner_for, threads_for
from stitching.processes import worker_pool

# Idle gap before each timed run of a block on a present processor: a runtime worker runs a
# request's first block after waiting for it, never back to back as a timing loop does. Measured
# on this 2-core host, digits_cnn blocks through TVM: 0.107 / 0.057 ms back to back, 0.179 / 0.131 ms
# after 2 ms idle, 0.38 / 0.30 ms after 10 ms; the runtime at 200 requests/s ran them in 0.28 ms
# on average. Back to back, torch eager with two OpenMP threads while another process kept the
# other core busy took 98.8 ms per run against 0.55 ms after 5 ms idle (spinning barriers): the
# "30x too slow" torch-executor profiles. The gap a workload leaves is workload-dependent (see
# sparseloom.assemble.idle_gap_ms); 2 ms is the default when no workload is known.
IDLE_MS = 2.0


@dataclass(frozen=True)
class Timing:
    """Latency statistics of repeated runs, in milliseconds."""

    median_ms: float
    iqr_ms: float
    p90_ms: float
    repeats: int


def time_ms(fn: Callable[[], Any], repeats: int = 30, warmup: int = 5, idle_ms: float = 0.0) -> Timing:
    """Median, IQR and p90 of ``fn`` over ``repeats`` runs after ``warmup`` runs.

    ``idle_ms`` > 0 sleeps that long before each timed run, so each one starts from an idle
    processor (thread pools asleep, caches shared with other work), as a request does that
    reaches an idle runtime worker; back-to-back runs (``idle_ms=0``) time the steady state.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if idle_ms > 0:
            time.sleep(idle_ms / 1e3)
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    q25, q50, q75, q90 = np.percentile(samples, [25, 50, 75, 90])
    return Timing(median_ms=float(q50), iqr_ms=float(q75 - q25), p90_ms=float(q90), repeats=repeats)


class _LiveBytes(TorchDispatchMode):
    """Counts bytes of storages created by ops and still alive; keeps the peak.

    Views and outputs that alias an existing storage (weights, inputs) are not new memory.
    """

    def __init__(self, existing: set[int]) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen = set(existing)

    def _release(self, ptr: int, nbytes: int) -> None:
        self.live -= nbytes
        self.seen.discard(ptr)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for t in outs:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr in self.seen or storage.nbytes() == 0:
                continue
            self.seen.add(ptr)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, ptr, storage.nbytes())
        return out


def peak_activation_bytes(block: BlockSpec) -> int:
    """Peak bytes of intermediate and output tensors alive during one eager run, plus the inputs."""
    existing = {t.untyped_storage().data_ptr() for t in block.module.state_dict().values()}
    existing |= {t.untyped_storage().data_ptr() for t in block.example_inputs}
    tracker = _LiveBytes(existing)
    with torch.no_grad(), tracker:
        out = block.module(*block.example_inputs)
    del out
    return tracker.peak + block.input_bytes


def measure_load_ms(path: Path, repeats: int = 3) -> float:
    """Median time to read ``path`` from storage with its pages evicted from the page cache first."""
    times = []
    for _ in range(repeats):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            while os.read(fd, 1 << 22):
                pass
            times.append((time.perf_counter() - start) * 1e3)
        finally:
            os.close(fd)
    return float(np.median(times))


def measure_copy_ms(nbytes: int, repeats: int = 30) -> float:
    """Host memory copy of an activation of ``nbytes``: the transfer between two host processors."""
    src = torch.empty(max(nbytes // 4, 1), dtype=torch.float32)
    dst = torch.empty_like(src)
    return time_ms(lambda: dst.copy_(src), repeats=repeats, warmup=3).median_ms


def measure_handoff_ms(first: Runner, second: Runner, inputs: tuple[torch.Tensor, ...],
                       repeats: int = 30, rounds: int = 5) -> float:
    """Extra time of running ``first`` then ``second`` (a hand-over between two host processors)
    over running each alone, measured on a probe block in interleaved rounds; at least 0."""
    mid = first(*inputs)

    def both() -> None:
        second(*tuple(o.clone() for o in first(*inputs)))

    extra = []
    for _ in range(rounds):
        pair = time_ms(both, repeats, 3).median_ms
        alone = time_ms(lambda: first(*inputs), repeats, 3).median_ms + time_ms(lambda: second(*mid), repeats, 3).median_ms
        extra.append(pair - alone)
    return max(0.0, float(np.median(extra)))


def host_device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({platform.machine()})"


def sample_of(block: BlockSpec, activation_bytes: int | None = None) -> CostSample:
    """Cost-model inputs of a block; activation traffic is its peak live activation memory
    (intermediates such as attention scores dominate, not just inputs and outputs)."""
    act = peak_activation_bytes(block) if activation_bytes is None else activation_bytes
    return CostSample(flops=block.flops, weight_bytes=block.weight_bytes, activation_bytes=act,
                      pattern=block.pattern, level=block.level, dtype=block.dtype)


class Profiler:
    """Profiles blocks on every processor of an SoC: measured where present, modelled elsewhere."""

    def __init__(self, soc: SoCSpec, options: CompileOptions, repeats: int = 30, warmup: int = 5,
                 progress: bool = True, compile_absent: bool = True, calibration_blocks: int = 0,
                 idle_ms: float = IDLE_MS) -> None:
        # Blocks of present processors are timed as the runtime runs them: each run after an idle
        # gap (see time_ms). Host blocks measured only to calibrate absent processors' roofline
        # are timed back to back: that fit is about compute rate, not wake-up.
        self.idle_ms = idle_ms
        # Opt-in (0 by default): with no present TVM processor, measure this many blocks on the host
        # CPU and scale every absent processor's roofline by the host's efficiency. The result then
        # depends on this machine's load, so it is off unless asked for; by default each processor's
        # efficiency comes from the published results in its SoC file (fit_references).
        self.calibration_blocks = calibration_blocks
        # compile_absent=False models absent processors without generating their code (NPU offload
        # decisions still come from BYOC partitioning): minutes saved when only latencies are wanted.
        self.compile_absent = compile_absent
        self.soc = soc
        self.options = options
        self.repeats = repeats
        self.warmup = warmup
        self.progress = progress

    def profile(self, blocks: Sequence[BlockSpec], weight_files: Mapping[str, Path] | None = None) -> Profile:
        """Compile (through the cache), measure or model each (block, processor), then transfers and loads."""
        measured: list[ProfileEntry] = []
        pending: list[tuple[BlockSpec, ProcessorSpec, CompiledBlock]] = []
        activations = {b.digest: peak_activation_bytes(b) for b in blocks}
        pairs = [(b, p) for b in blocks for p in self.soc.processors]
        unplanned: list[tuple[BlockSpec, ProcessorSpec]] = []
        for block, proc in tqdm(pairs, desc="profile", disable=not self.progress):
            backend = backend_for(proc)
            if backend.present(proc):
                compiled = backend.compile(block, proc, self.options)
                measured.append(self._measure(block, proc, compiled, activations[block.digest], self.idle_ms))
            elif self.compile_absent:
                pending.append((block, proc, backend.compile(block, proc, self.options)))
            else:
                unplanned.append((block, proc))
        # After the measurements, so the worker processes do not disturb them.
        for (block, proc), compiled in zip(unplanned, self._plan_only(unplanned), strict=True):
            pending.append((block, proc, compiled))
        calibration: list[ProfileEntry] = []
        if pending and self.calibration_blocks and not any(e.executor == "tvm" for e in measured):
            host = host_cpu()
            ranked = sorted(blocks, key=lambda b: b.flops)
            step = max(1, len(ranked) // self.calibration_blocks)
            for block in tqdm(ranked[::step][: self.calibration_blocks], desc="calibrate on host",
                              disable=not self.progress):
                compiled = backend_for(host).compile(block, host, self.options)
                calibration.append(self._measure(block, host, compiled, activations[block.digest], 0.0))
        modelled = self._model(pending, measured + calibration, blocks, activations)
        return Profile(
            soc=self.soc.name,
            entries=tuple(measured + modelled),
            transfers=tuple(self._transfers(blocks)),
            loads=tuple(self._loads(blocks, weight_files or {})),
            meta={"tvm_version": tvm.__version__, "host": host_device(), "repeats": self.repeats,
                  "warmup": self.warmup, "idle_ms": self.idle_ms, "compiles": self.options.cache.compiles,
                  "calibration": [dataclasses.asdict(e) for e in calibration],
                  "efficiency": {"host calibration" if calibration else "published references": True}},
        )

    def _plan_only(self, pairs: Sequence[tuple[BlockSpec, ProcessorSpec]]) -> list[CompiledBlock]:
        """:func:`plan_only` for each pair. An NPU offload plan takes a Relax import (about a second), so
        identical NPUs (same ops and dtypes, e.g. the Orin's two DLAs) share one, and the distinct ones
        run in worker processes, one per CPU."""
        def same(proc: ProcessorSpec) -> tuple[str, ...]:
            return (proc.kind, proc.executor, repr(proc.ops), repr(proc.dtypes), repr(proc.target))

        firsts: dict[tuple[str, tuple[str, ...]], int] = {}
        for i, (block, proc) in enumerate(pairs):
            if proc.kind == "npu":
                firsts.setdefault((block.digest, same(proc)), i)
        done: dict[int, CompiledBlock] = {}
        workers = min(len(firsts), len(os.sched_getaffinity(0)))
        bar = tqdm(total=len(firsts), desc="npu offload plans", disable=not self.progress or not firsts)
        if workers <= 1:
            for i in firsts.values():
                done[i] = plan_only(*pairs[i])
                bar.update()
        else:
            # Forked: the workers only partition Relax modules, and a fork needs no re-import.
            with worker_pool(workers, multiprocessing.get_context("fork")) as pool:
                futures = {pool.submit(plan_only, *pairs[i]): i for i in firsts.values()}
                for fut in as_completed(futures):
                    done[futures[fut]] = fut.result()
                    bar.update()
        bar.close()
        out = []
        for block, proc in pairs:
            if proc.kind != "npu":
                out.append(plan_only(block, proc))
                continue
            twin = done[firsts[(block.digest, same(proc))]]
            assert twin.offload is not None
            out.append(dataclasses.replace(twin, processor=proc.name,
                                           offload=dataclasses.replace(twin.offload, processor=proc.name)))
        return out

    def _measure(self, block: BlockSpec, proc: ProcessorSpec, compiled: CompiledBlock, act: int,
                 idle_ms: float) -> ProfileEntry:
        run = runner_for(block, proc, compiled)
        timing = time_ms(lambda: run(*block.example_inputs), self.repeats, self.warmup, idle_ms)
        threads = threads_for(proc)
        return ProfileEntry(
            block=block.name, digest=block.digest, processor=proc.name, latency_ms=timing.median_ms,
            latency_iqr_ms=timing.iqr_ms, latency_p90_ms=timing.p90_ms, weight_bytes=block.weight_bytes,
            activation_bytes=act, flops=block.flops, pattern=block.pattern, level=block.level,
            source="measured", device=host_device(), threads=threads,
            tvm_version=tvm.__version__ if proc.executor == "tvm" else None, executor=proc.executor,
            repeats=timing.repeats, compile_s=compiled.compile_s,
            note=f"{compiled.tuning_state}; " + (f"each run after {idle_ms:g} ms idle" if idle_ms > 0 else "back to back"),
        )

    def _model(self, pending: list[tuple[BlockSpec, ProcessorSpec, CompiledBlock]], measured: list[ProfileEntry],
               blocks: Sequence[BlockSpec], activations: dict[str, int]) -> list[ProfileEntry]:
        effs = self.efficiencies(measured, blocks)
        out = []
        cpu = next((p for p in self.soc.processors if p.kind == "cpu"), None)
        for block, proc, compiled in pending:
            sample = sample_of(block, activations[block.digest])
            eff = effs[proc.name]
            if compiled.offload is not None and cpu is not None:
                latency = offload_ms(compiled.offload, proc, cpu, self.soc.transfer, block.dtype, eff, effs[cpu.name])
                how = f"roofline, BYOC offload {compiled.offload.offloaded_flop_fraction:.0%} of FLOPs"
            elif sample.dtype in proc.dtypes and proc.peak_gops.for_dtype(sample.dtype) > 0:
                latency = roofline_ms(proc, sample, eff)
                how = "roofline"
            elif "fp16" in proc.dtypes and sample.dtype == "fp32" and proc.peak_gops.fp16 > 0:
                # DSP/NPU toolchains (QNN, TensorRT) run fp32 graphs converted to fp16.
                latency = roofline_ms(proc, dataclasses.replace(sample, dtype="fp16"), eff)
                how = "roofline, run as fp16"
            else:
                continue  # the processor cannot run this dtype: no entry, so no plan places it there
            out.append(ProfileEntry(
                block=block.name, digest=block.digest, processor=proc.name, latency_ms=latency, latency_iqr_ms=0.0,
                latency_p90_ms=latency, weight_bytes=block.weight_bytes, activation_bytes=activations[block.digest],
                flops=block.flops, pattern=block.pattern, level=block.level, source="modelled",
                device=f"{how} ({eff.source})", executor=proc.executor, compile_s=compiled.compile_s,
                note=f"compiled: {compiled.artifact_format}",
            ))
        return out

    def efficiencies(self, measured: list[ProfileEntry], blocks: Sequence[BlockSpec]) -> dict[str, Efficiency]:
        """Each processor's modelled efficiency: fitted to its SoC file's published results (the
        default, independent of this machine), or, when ``calibration_blocks`` asked for it, the
        host's efficiency fitted on measured blocks (each processor keeps its own launch overhead)."""
        if self.calibration_blocks:
            host = dataclasses.replace(self._efficiency(measured, blocks), overhead_us=None)
            if host.source != "uncalibrated":
                host = dataclasses.replace(host, source=f"host calibration: {host.source} on {host_device()}")
                return {p.name: host for p in self.soc.processors}
        return fit_soc(self.soc.processors)

    def _efficiency(self, measured: list[ProfileEntry], blocks: Sequence[BlockSpec]) -> Efficiency:
        tvm_measured = [e for e in measured if e.executor == "tvm"]
        by_digest = {b.digest: b for b in blocks}
        if len(tvm_measured) < 3:
            return Efficiency()
        names = {p.name for p in self.soc.processors}
        first = tvm_measured[0].processor
        proc = self.soc.processor(first) if first in names else host_cpu(first)
        samples = [
            CostSample(**{**sample_of(by_digest[e.digest], e.activation_bytes).__dict__, "latency_ms": e.latency_ms})
            for e in tvm_measured if e.processor == proc.name
        ]
        host = proc if proc.kind == "cpu" else host_cpu()
        return calibrate(host, samples) if len(samples) >= 3 else Efficiency()

    def _transfers(self, blocks: Sequence[BlockSpec]) -> list[TransferCost]:
        out = []
        sizes = sorted({b.output_bytes() for b in blocks})
        present = [p for p in self.soc.processors if backend_for(p).present(p)]
        handoff = self._host_handoffs(present)
        for nbytes in sizes:
            for src in self.soc.processors:
                for dst in self.soc.processors:
                    if src.name == dst.name:
                        continue
                    if (src.name, dst.name) in handoff:
                        latency = handoff[(src.name, dst.name)] + measure_copy_ms(nbytes)
                        out.append(TransferCost(src.name, dst.name, nbytes, latency, "measured",
                                                f"{host_device()}: probe hand-over + copy"))
                    else:
                        out.append(TransferCost(src.name, dst.name, nbytes, transfer_ms(self.soc.transfer, nbytes),
                                                "modelled", f"SoC transfer {self.soc.transfer.latency_us} us + bytes/"
                                                f"{self.soc.transfer.bandwidth_gbps} GB/s"))
        return out

    def _host_handoffs(self, present: list[ProcessorSpec]) -> dict[tuple[str, str], float]:
        """Hand-over cost between processors present here, measured on a small probe block."""
        if len(present) < 2:
            return {}
        torch.manual_seed(0)
        probe = make_block("handoff-probe", torch.nn.Conv2d(32, 32, 1), (torch.randn(1, 32, 4, 4),))
        runs = {p.name: runner_for(probe, p, backend_for(p).compile(probe, p, self.options)) for p in present}
        return {(a.name, b.name): measure_handoff_ms(runs[a.name], runs[b.name], probe.example_inputs, repeats=20, rounds=3)
                for a in present for b in present if a.name != b.name}

    def _loads(self, blocks: Sequence[BlockSpec], weight_files: Mapping[str, Path]) -> list[LoadCost]:
        out = []
        with tempfile.TemporaryDirectory(dir=self.options.cache.root) as tmp:
            for block in blocks:
                path = weight_files.get(block.digest)
                if path is None:
                    path = Path(tmp) / f"{block.digest}.safetensors"
                    tensors = {k: v.contiguous() for k, v in block.module.state_dict().items()}
                    save_file(tensors, str(path))
                nbytes = path.stat().st_size
                out.append(LoadCost(block.name, block.digest, nbytes, measure_load_ms(path), "measured",
                                    f"{host_device()}, page cache evicted"))
                out.append(LoadCost(block.name, block.digest, nbytes,
                                    nbytes / (self.soc.storage_read_gbps * 1e9) * 1e3, "modelled",
                                    f"storage_read_gbps={self.soc.storage_read_gbps}"))
        return out
