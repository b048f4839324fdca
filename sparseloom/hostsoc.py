"""Measure this machine's CPU as an SoC description, so the ``host`` SoC is measured, not copied.

Peak rates come from timed torch matrix multiplies, memory bandwidth from a
timed large copy, storage bandwidth from reading a fresh file after evicting it
from the page cache. Every figure is recorded with how it was measured.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch


@dataclass(frozen=True)
class HostMeasurement:
    cpu_model: str
    threads: int
    fp32_gops: float
    fp16_gops: float
    int8_gops: float
    memory_bandwidth_gbps: float
    storage_read_gbps: float
    launch_overhead_us: float
    memory_mb: float


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _matmul_gops(dtype: torch.dtype, n: int, repeats: int) -> float:
    if dtype == torch.int8:
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        try:
            seconds = _best_seconds(lambda: torch._int_mm(a, b), repeats)
        except RuntimeError:
            return 0.0
    else:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        seconds = _best_seconds(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def _copy_gbps(mb: int, repeats: int) -> float:
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    seconds = _best_seconds(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds / 1e9  # read + write


def storage_read_gbps(directory: Path, mb: int = 256) -> float:
    """Read a fresh file of ``mb`` MB after dropping it from the page cache."""
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as handle:
        chunk = os.urandom(2**20)
        for _ in range(mb):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
        name = handle.name
    try:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            while os.read(fd, 8 * 2**20):
                pass
            seconds = time.perf_counter() - start
        finally:
            os.close(fd)
    finally:
        os.unlink(name)
    return mb * 2**20 / seconds / 1e9


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _launch_us() -> float:
    x = torch.zeros(1)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(1000):
            torch.add(x, x)
        samples.append((time.perf_counter() - start) / 1000 * 1e6)
    return statistics.median(samples)


def measure(
    directory: Path,
    quick: bool = False,
    progress: Callable[[str], None] = lambda s: None,
) -> HostMeasurement:
    """Measure the host. ``quick`` uses smaller sizes (for tests)."""
    n, reps = (256, 3) if quick else (2048, 5)
    progress("fp32 matmul")
    fp32 = _matmul_gops(torch.float32, n, reps)
    progress("fp16 matmul")
    fp16 = _matmul_gops(torch.float16, n // 2, reps)
    progress("int8 matmul")
    int8 = _matmul_gops(torch.int8, n, reps)
    progress("memory copy")
    bw = _copy_gbps(16 if quick else 512, reps)
    progress("storage read")
    storage = storage_read_gbps(directory, 8 if quick else 256)
    return HostMeasurement(
        cpu_model=_cpu_model(),
        threads=torch.get_num_threads(),
        fp32_gops=fp32,
        fp16_gops=fp16,
        int8_gops=int8,
        memory_bandwidth_gbps=bw,
        storage_read_gbps=storage,
        launch_overhead_us=_launch_us(),
        memory_mb=psutil.virtual_memory().total / 2**20,
    )


def to_yaml(m: HostMeasurement, when: str) -> str:
    """The ``host`` SoC file for a measurement, each figure commented with how it was measured."""
    how = f"measured on this host by `sparseloom soc measure` on {when}, {m.threads} torch threads"
    return f"""# host: this machine's CPU, {how}.
# Every figure below is measured, not taken from a datasheet.
soc:
  name: host
  memory_mb: {m.memory_mb:.0f}            # psutil total memory
  storage_read_gbps: {m.storage_read_gbps:.3f}   # cold read of a 256 MB file after POSIX_FADV_DONTNEED
  transfer:
    latency_us: 0              # one processor: no hand-off
    bandwidth_gbps: {m.memory_bandwidth_gbps:.2f}
  source: "{how}"
  processors:
    - name: cpu
      kind: cpu
      target: {{kind: llvm}}
      # best of repeated torch matmuls: fp32/fp16 2048^2 (fp16 1024^2), int8 via torch._int_mm
      peak_gops: {{fp32: {m.fp32_gops:.1f}, fp16: {m.fp16_gops:.1f}, int8: {m.int8_gops:.1f}}}
      memory_bandwidth_gbps: {m.memory_bandwidth_gbps:.2f}   # numpy copy of 512 MB, read + write bytes
      launch_overhead_us: {m.launch_overhead_us:.2f}       # median torch.add on a 1-element tensor
      sparsity: {{structured: 1.0, unstructured: 0.0, "2:4": 0.0, block: 0.0}}
      dtypes: [fp32, fp16, int8]
      source: "{how}; CPU {m.cpu_model}"
"""
