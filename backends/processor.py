"""Processor and SoC descriptions as plain frozen data for the backends.

Field names mirror the workload YAML schema (``sparseloom.workload.Processor`` /
``SoC``) so the sparseloom layer can build these with a one-line adapter;
backends never import sparseloom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ProcessorKind = Literal["cpu", "gpu", "dsp", "npu"]
Executor = Literal["tvm", "torch"]
Dtype = Literal["fp32", "fp16", "int8"]

# Patterns a block may carry; "dense" and "int8" are not sparsity patterns.
SPARSITY_PATTERNS: tuple[str, ...] = ("structured", "unstructured", "2:4", "block")


@dataclass(frozen=True)
class PeakRates:
    """Peak arithmetic throughput per dtype in GOP/s (0 means unsupported)."""

    fp32: float
    fp16: float = 0.0
    int8: float = 0.0

    def for_dtype(self, dtype: str) -> float:
        return {"fp32": self.fp32, "fp16": self.fp16, "int8": self.int8}.get(dtype, 0.0)


@dataclass(frozen=True)
class SparsitySupport:
    """Fraction (0..1) of skipped work a processor turns into saved time, per pattern."""

    structured: float = 1.0
    unstructured: float = 0.0
    nm_2_4: float = 0.0
    block: float = 0.0

    def efficiency(self, pattern: str) -> float:
        return {
            "structured": self.structured,
            "unstructured": self.unstructured,
            "2:4": self.nm_2_4,
            "block": self.block,
        }.get(pattern, 0.0)


@dataclass(frozen=True)
class Reference:
    """One public per-model result on a processor, which its modelled efficiency is fitted to.

    ``gop`` is the work of one inference (2 x MACs, in 1e9 operations), ``weight_mb`` and
    ``activation_mb`` the bytes it moves once; ``latency_ms`` is the published time of one
    inference (single-stream latency, or 1000 / offline throughput per stream).
    """

    model: str
    dtype: str
    gop: float
    weight_mb: float
    latency_ms: float
    source: str
    activation_mb: float = 0.0


@dataclass(frozen=True)
class ProcessorSpec:
    """One compute unit of an SoC, as the backends need it."""

    name: str
    kind: ProcessorKind
    target: dict[str, str | int]
    peak_gops: PeakRates
    memory_bandwidth_gbps: float
    executor: Executor = "tvm"
    launch_overhead_us: float = 0.0
    sparsity: SparsitySupport = field(default_factory=SparsitySupport)
    dtypes: tuple[str, ...] = ("fp32", "fp16", "int8")
    ops: tuple[str, ...] | None = None
    source: str = "unspecified"
    # Public per-model results its modelled efficiency is fitted to (see backends.costmodel.fit_references).
    references: tuple[Reference, ...] = ()

    def __post_init__(self) -> None:
        if "kind" not in self.target:
            raise ValueError(f"processor {self.name!r}: target needs a 'kind'")
        if self.executor == "torch" and self.kind != "cpu":
            raise ValueError(f"processor {self.name!r}: executor 'torch' runs on the host CPU only")
        if self.memory_bandwidth_gbps <= 0:
            raise ValueError(f"processor {self.name!r}: memory_bandwidth_gbps must be > 0")

    def __hash__(self) -> int:  # target is a dict; hash its sorted items
        return hash((self.name, self.kind, tuple(sorted(self.target.items())), self.executor))


@dataclass(frozen=True)
class TransferSpec:
    """Cost of moving an activation between two processors of one SoC."""

    latency_us: float
    bandwidth_gbps: float


@dataclass(frozen=True)
class SoCSpec:
    """A heterogeneous SoC: processors sharing one memory, plus storage and transfer costs."""

    name: str
    memory_mb: float
    storage_read_gbps: float
    transfer: TransferSpec
    processors: tuple[ProcessorSpec, ...]
    source: str = "unspecified"

    def processor(self, name: str) -> ProcessorSpec:
        for proc in self.processors:
            if proc.name == name:
                return proc
        raise KeyError(name)


def host_cpu(name: str = "host-cpu", executor: Executor = "tvm", threads: int | None = None) -> ProcessorSpec:
    """A spec for the machine this runs on, with rough peaks; calibration corrects them."""
    import os

    cores = threads or len(os.sched_getaffinity(0))
    target: dict[str, str | int] = {"kind": "llvm", "mcpu": _host_mcpu(), "num-cores": cores}
    # 16 fp32 FMA lanes x 2 ops x ~3 GHz per core: an optimistic peak the calibration scales down.
    return ProcessorSpec(
        name=name,
        kind="cpu",
        target=target,
        executor=executor,
        peak_gops=PeakRates(fp32=96.0 * cores, fp16=96.0 * cores, int8=192.0 * cores),
        memory_bandwidth_gbps=20.0,
        launch_overhead_us=10.0,
        source="host defaults (calibrated by backends.costmodel)",
    )


def _host_mcpu() -> str:
    from tvm.target import codegen

    name = str(codegen.llvm_get_system_cpu())
    return name if name and name != "generic" else "x86-64"
