"""Processor and SoC descriptions: the one definition of these types, for the backends and the
workload language alike.

They are frozen pydantic models with the workload YAML's field names and bounds, so the YAML
(``sparseloom.workload``) validates straight into them, with located errors, and code that builds
one (``host_cpu``, a user's own SoC) is checked by the same rules. Backends never import sparseloom.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

ProcessorKind = Literal["cpu", "gpu", "dsp", "npu"]
Executor = Literal["tvm", "torch"]
Dtype = Literal["fp32", "fp16", "int8"]
# Operator families an NPU or DSP may declare; backends match them against graph operators.
OpName = Literal[
    "conv2d",
    "linear",
    "matmul",
    "add",
    "mul",
    "relu",
    "gelu",
    "softmax",
    "layer_norm",
    "batch_norm",
    "pool",
    "reshape",
    "concat",
    "attention",
]

# Patterns a block may carry; "dense" and "int8" are not sparsity patterns.
SPARSITY_PATTERNS: tuple[str, ...] = ("structured", "unstructured", "2:4", "block")

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", max_length=64)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Source = Annotated[str, Field(min_length=3)]


class Spec(BaseModel):
    """Base of the SoC types: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _target_dict(value: Any) -> Any:
    # A bare kind ("llvm", "cuda") is shorthand for {"kind": ...}.
    return {"kind": value} if isinstance(value, str) else value


class PeakRates(Spec):
    """Peak arithmetic throughput per dtype, in GOP/s (0 = unsupported)."""

    fp32: NonNegative
    fp16: NonNegative = 0.0
    int8: NonNegative = 0.0

    def for_dtype(self, dtype: str) -> float:
        return {"fp32": self.fp32, "fp16": self.fp16, "int8": self.int8}.get(dtype, 0.0)


class SparsitySupport(Spec):
    """How well a processor turns each sparsity pattern into speed: per pattern, the fraction (0..1)
    of skipped work that becomes saved time. Structured pruning shrinks tensors, so it helps
    everywhere by default."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    structured: Fraction = 1.0
    unstructured: Fraction = 0.0
    nm_2_4: Fraction = Field(default=0.0, alias="2:4")
    block: Fraction = 0.0

    def efficiency(self, pattern: str) -> float:
        return {
            "structured": self.structured,
            "unstructured": self.unstructured,
            "2:4": self.nm_2_4,
            "block": self.block,
        }.get(pattern, 0.0)


class Reference(Spec):
    """One public per-model result on a processor, which its modelled efficiency is fitted to.

    ``gop`` is the work of one inference (2 x MACs, in 1e9 operations), ``weight_mb`` and
    ``activation_mb`` the bytes it moves once (MB = 1e6 bytes); ``latency_ms`` is the published time
    of one inference (single-stream latency, or 1000 / offline throughput per stream).
    """

    model: Annotated[str, Field(min_length=1, max_length=64)]
    dtype: Dtype
    gop: Positive
    weight_mb: NonNegative
    activation_mb: NonNegative = 0.0
    latency_ms: Positive
    source: Source


class ProcessorSpec(Spec):
    """One compute unit of an SoC."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Name
    kind: ProcessorKind
    target: Annotated[dict[str, str | int], BeforeValidator(_target_dict)]
    executor: Executor = "tvm"
    peak_gops: PeakRates
    memory_bandwidth_gbps: Positive
    launch_overhead_us: NonNegative = 0.0
    sparsity: SparsitySupport = SparsitySupport()
    dtypes: tuple[Dtype, ...] = ("fp32", "fp16", "int8")
    ops: tuple[OpName, ...] | None = None
    source: Source
    # Public per-model results its modelled efficiency is fitted to (see backends.costmodel.fit_references).
    references: Annotated[tuple[Reference, ...], Field(max_length=32, alias="reference")] = ()

    @model_validator(mode="after")
    def _check(self) -> ProcessorSpec:
        if "kind" not in self.target:
            raise ValueError("target needs a 'kind' (for example llvm, cuda, opencl)")
        if self.executor == "torch" and self.kind != "cpu":
            raise ValueError("executor 'torch' runs on the host CPU only; use kind 'cpu'")
        for ref in self.references:
            if ref.latency_ms * 1e3 <= self.launch_overhead_us:
                raise ValueError(f"reference {ref.model!r}: latency_ms {ref.latency_ms} is not longer than "
                                 f"launch_overhead_us {self.launch_overhead_us}")
            if ref.dtype not in self.dtypes:
                raise ValueError(f"reference {ref.model!r}: dtype {ref.dtype} is not among the processor's dtypes")
        return self

    def __hash__(self) -> int:  # target is a dict; hash its sorted items
        return hash((self.name, self.kind, tuple(sorted(self.target.items())), self.executor))


class TransferSpec(Spec):
    """Cost of moving an activation between two processors of one SoC."""

    latency_us: NonNegative
    bandwidth_gbps: Positive


class SoCSpec(Spec):
    """A heterogeneous system-on-chip: processors sharing one memory, plus storage and transfer costs."""

    name: Name
    memory_mb: Positive
    storage_read_gbps: Positive
    transfer: TransferSpec
    processors: Annotated[tuple[ProcessorSpec, ...], Field(min_length=1)]
    source: Source

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
