"""Backends per processor kind: host/cross CPU, GPU, DSP (Hexagon), NPU (BYOC), torch eager.

Each is one class behind :class:`backends.base.Backend`; :data:`BACKENDS`
maps a processor kind to its class and :func:`backend_for` picks one for a
processor (``executor: torch`` selects the eager reference).
"""

from __future__ import annotations

import os
import platform
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import tvm
from tvm import relax

from backends.base import Backend, CompiledBlock, CompileOptions, Runner
from backends.block import BlockSpec
from backends.cache import CacheEntry, cache_key, canonical_target
from backends.compile import build, choose_schedules, import_block, make_target, tune
from backends.identity import pipeline_version, tuning_state
from backends.link import zig_available, zig_linker, zig_triple
from backends.npu import OffloadPlan, partition
from backends.processor import ProcessorSpec

PIPELINE_VERSION = pipeline_version()


def input_signature(block: BlockSpec) -> str:
    return ";".join(f"{tuple(t.shape)}:{t.dtype}" for t in block.example_inputs)


def threads_for(processor: ProcessorSpec) -> int:
    """Intra-op threads a block runs with on ``processor`` (profiler and runtime alike): the target's
    ``num-cores``; else every core here for TVM, one for torch eager.

    Torch eager's OpenMP pool spins in barriers: on this 2-core host, with other processes busy on
    the cores, digits_cnn block 0 took 105 ms per run with 2 threads against 0.37 ms with 1 (minilm
    layers 50-76 ms against 11.5 ms); TVM's own pool kept 2 threads at 0.26 ms. Per-run times that
    swing with other processes' load were the "30x" gap between torch profiles and the runtime.
    """
    if "num-cores" in processor.target:
        return int(processor.target["num-cores"])
    return 1 if processor.executor == "torch" else len(os.sched_getaffinity(0))


def set_tvm_threads(threads: int) -> None:
    """Size TVM's CPU thread pool (it uses 1 thread unless told otherwise)."""
    tvm.get_global_func("runtime.config_threadpool")(0, threads)


def host_arch() -> str:
    return platform.machine().lower()


def host_mcpu() -> str:
    """LLVM's name for this host's CPU (as ``backends.processor.host_cpu`` puts in its target)."""
    from backends.processor import _host_mcpu

    return _host_mcpu()


def _cached(block: BlockSpec, processor: ProcessorSpec, state: str, extra: str = "") -> tuple[str, dict[str, Any]]:
    key = cache_key(block.digest, input_signature(block), processor.target, state, PIPELINE_VERSION + extra)
    record = {"block": block.name, "digest": block.digest, "processor": processor.name,
              "target": canonical_target(processor.target), "tuning_state": state, "tvm": tvm.__version__}
    return key, record


def _compiled(entry: CacheEntry, block: BlockSpec, processor: ProcessorSpec, hit: bool,
              offload: OffloadPlan | None = None) -> CompiledBlock:
    rec = entry.record
    return CompiledBlock(
        block=block.name, digest=block.digest, processor=processor.name, target=rec["target"],
        artifact=entry.artifact, artifact_format=rec["format"], runnable=rec["format"] == "so",
        cache_hit=hit, compile_s=0.0 if hit else float(rec["compile_s"]), tuning_state=rec["tuning_state"],
        offload=offload, note=rec.get("note", ""),
    )


class CPUBackend:
    """llvm targets: the host (compiled, loaded, run) or a cross CPU (compiled, exported, linked with zig)."""

    kind = "cpu"

    def present(self, processor: ProcessorSpec) -> bool:
        """This host's CPU: an llvm target of the host's architecture that names no CPU or names
        this one. A file describing another x86 or Arm chip (the Core Ultra's ``alderlake``, the
        Orin's ``cortex-a78``) is modelled, not measured on whatever CPU this happens to be."""
        triple = str(processor.target.get("mtriple", ""))
        mcpu = processor.target.get("mcpu")
        return (processor.target.get("kind") == "llvm" and (not triple or triple.startswith(host_arch()))
                and (mcpu is None or str(mcpu) == host_mcpu()))

    def compile(self, block: BlockSpec, processor: ProcessorSpec, options: CompileOptions) -> CompiledBlock:
        target = make_target(processor.target)
        if options.tuning_db is not None and options.tune_trials > 0 and self.present(processor):
            mod = import_block(block)
            tune(mod, target, options.tuning_db, options.tune_trials)
            choose_schedules(mod, target, options.tuning_db)
        state = tuning_state(options.tuning_db)
        linked = "" if self.present(processor) else f":link={options.cross_link}"
        key, record = _cached(block, processor, state, linked)
        entry = options.cache.get(key)
        if entry is not None:
            return _compiled(entry, block, processor, hit=True)
        with options.cache.lock(key):  # one process compiles a key; the others then hit
            entry = options.cache.get(key)
            if entry is not None:
                return _compiled(entry, block, processor, hit=True)
            start = time.perf_counter()
            executable = build(import_block(block), target, options.tuning_db)
            fmt, writer, note = self._exporter(executable, processor, options.cross_link)
            record.update(format=fmt, compile_s=time.perf_counter() - start, note=note)
            entry = options.cache.put(key, "." + ("tar" if fmt == "tar" else "so"), writer, record)
        return _compiled(entry, block, processor, hit=False)

    def _exporter(self, executable: Any, processor: ProcessorSpec, cross_link: bool) -> tuple[str, Any, str]:
        if self.present(processor):
            return "so", lambda p: executable.export_library(str(p)), ""
        triple = zig_triple(str(processor.target.get("mtriple", "")))
        if triple is not None and cross_link and zig_available():
            linker = zig_linker(triple)
            return "so-cross", lambda p: executable.export_library(str(p), fcompile=linker), f"linked with zig cc -target {triple}"
        return "tar", lambda p: _export_objects(executable, p), "objects only (not linked)"

    def load(self, compiled: CompiledBlock, processor: ProcessorSpec) -> Runner:
        if not compiled.runnable or compiled.artifact is None:
            raise RuntimeError(f"{compiled.block} on {compiled.processor} is not runnable here ({compiled.artifact_format})")
        set_tvm_threads(threads_for(processor))
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(compiled.artifact)), tvm.cpu())
        return _vm_runner(vm, tvm.cpu())


def _export_objects(executable: Any, path: Path) -> None:
    # export_library picks the tar format from the file name, so write under a .tar name first.
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / "block.tar"
        executable.export_library(str(out))
        shutil.move(str(out), path)


def object_members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def _vm_runner(vm: Any, device: Any) -> Runner:
    def run(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = [tvm.runtime.from_dlpack(t.contiguous()) if device.dlpack_device_type() == 1 else
                tvm.runtime.tensor(t.numpy(), device) for t in inputs]
        out = vm["main"](*args)
        outs = list(out) if not hasattr(out, "numpy") else [out]
        return tuple(torch.from_dlpack(o) if device.dlpack_device_type() == 1 else torch.from_numpy(o.numpy()) for o in outs)

    return run


class GPUBackend:
    """cuda / opencl (adreno) code generation with dlight GPU schedules; runs only where a GPU is."""

    kind = "gpu"

    def present(self, processor: ProcessorSpec) -> bool:
        kind = str(processor.target.get("kind"))
        device = tvm.cuda(0) if kind == "cuda" else tvm.opencl(0) if kind == "opencl" else None
        return bool(device is not None and device.exist)

    def compile(self, block: BlockSpec, processor: ProcessorSpec, options: CompileOptions) -> CompiledBlock:
        state = "untuned"  # MetaSchedule GPU tuning needs the device; codegen uses dlight defaults
        key, record = _cached(block, processor, state)
        entry = options.cache.get(key)
        if entry is not None:
            return _compiled(entry, block, processor, hit=True)
        with options.cache.lock(key):  # one process compiles a key; the others then hit
            entry = options.cache.get(key)
            if entry is not None:
                return _compiled(entry, block, processor, hit=True)
            start = time.perf_counter()
            target = make_target(processor.target)
            executable = build(import_block(block), target)
            runnable = self.present(processor)
            fmt = "so" if runnable else "tar"
            writer = (lambda p: executable.export_library(str(p))) if runnable else (lambda p: _export_objects(executable, p))
            record.update(format=fmt, compile_s=time.perf_counter() - start,
                          note="" if runnable else "device code and host objects; no GPU here to run them")
            entry = options.cache.put(key, "." + fmt, writer, record)
        return _compiled(entry, block, processor, hit=False)

    def load(self, compiled: CompiledBlock, processor: ProcessorSpec) -> Runner:
        if not compiled.runnable or compiled.artifact is None:
            raise RuntimeError(f"no GPU for {compiled.processor} on this machine")
        device = tvm.cuda(0) if processor.target.get("kind") == "cuda" else tvm.opencl(0)
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(compiled.artifact)), device)

        def run(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = vm["main"](*[tvm.runtime.tensor(t.numpy(), device) for t in inputs])
            outs = list(out) if not hasattr(out, "numpy") else [out]
            return tuple(torch.from_numpy(o.numpy()) for o in outs)

        return run


def device_source(executable: Any) -> str:
    """Generated device code (CUDA/OpenCL source) of a GPU executable, for inspection."""
    sources = [m.inspect_source() for m in executable.mod.imports[0].imports] if executable.mod.imports else []
    return "\n".join(sources)


class DSPBackend(CPUBackend):
    """Hexagon through llvm (``mtriple=hexagon``): real Hexagon objects, linked with zig where possible."""

    kind = "dsp"

    def present(self, processor: ProcessorSpec) -> bool:
        return False  # no Hexagon here; latency comes from the cost model


class NPUBackend:
    """BYOC partitioning: supported regions are offloaded (latency modelled), the rest compiled for the host CPU."""

    kind = "npu"

    def present(self, processor: ProcessorSpec) -> bool:
        return False

    def offload_plan(self, block: BlockSpec, processor: ProcessorSpec) -> OffloadPlan:
        """Which operators of ``block`` the NPU takes (BYOC partitioning only, no code generation)."""
        return partition(import_block(block), processor.name, processor.ops or (), processor.dtypes, block.dtype)[1]

    def compile(self, block: BlockSpec, processor: ProcessorSpec, options: CompileOptions) -> CompiledBlock:
        plan = self.offload_plan(block, processor)
        key, record = _cached(block, processor, "untuned")
        entry = options.cache.get(key)
        hit = entry is not None
        if entry is None:
            with options.cache.lock(key):  # one process compiles a key; the others then hit
                entry = options.cache.get(key)
                hit = entry is not None
                if entry is None:
                    start = time.perf_counter()
                    fallback = ProcessorSpec(name=f"{processor.name}-fallback", kind="cpu", target=_fallback_target(),
                                             peak_gops=processor.peak_gops,
                                             memory_bandwidth_gbps=processor.memory_bandwidth_gbps,
                                             source=processor.source)
                    executable = build(import_block(block), make_target(fallback.target))
                    record.update(format="so", compile_s=time.perf_counter() - start,
                                  note="host CPU build of the whole block: the functional fallback; NPU part modelled")
                    entry = options.cache.put(key, ".so", lambda p: executable.export_library(str(p)), record)
        compiled = _compiled(entry, block, processor, hit=hit, offload=plan)
        return CompiledBlock(**{**compiled.__dict__, "runnable": False})

    def load(self, compiled: CompiledBlock, processor: ProcessorSpec) -> Runner:
        raise RuntimeError(f"no NPU {processor.name} on this machine; its latency is modelled")


def _fallback_target() -> dict[str, str | int]:
    from backends.processor import host_cpu

    return host_cpu().target


class TorchBackend:
    """The eager PyTorch reference on the host CPU (``executor: torch``); nothing to compile."""

    kind = "cpu"

    def present(self, processor: ProcessorSpec) -> bool:
        return True

    def compile(self, block: BlockSpec, processor: ProcessorSpec, options: CompileOptions) -> CompiledBlock:
        return CompiledBlock(block=block.name, digest=block.digest, processor=processor.name, target="torch-eager",
                             artifact=None, artifact_format="none", runnable=True, cache_hit=True, compile_s=0.0,
                             tuning_state="eager")

    def load(self, compiled: CompiledBlock, processor: ProcessorSpec) -> Runner:
        raise RuntimeError("the torch executor runs the module itself: use runner_for(block, processor, compiled)")


def torch_runner(block: BlockSpec, processor: ProcessorSpec) -> Runner:
    threads = threads_for(processor)
    module = block.module.eval()

    def run(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        torch.set_num_threads(threads)
        with torch.no_grad():
            out = module(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return run


BACKENDS: dict[str, type] = {"cpu": CPUBackend, "gpu": GPUBackend, "dsp": DSPBackend, "npu": NPUBackend}


def backend_for(processor: ProcessorSpec) -> Backend:
    """The backend that serves ``processor``."""
    if processor.executor == "torch":
        return TorchBackend()
    try:
        return BACKENDS[processor.kind]()
    except KeyError:
        raise ValueError(f"no backend for processor kind {processor.kind!r}; known: {sorted(BACKENDS)}") from None


def plan_only(block: BlockSpec, processor: ProcessorSpec) -> CompiledBlock:
    """What the cost model needs of an absent processor without generating code: NPU offload decisions."""
    offload = NPUBackend().offload_plan(block, processor) if processor.kind == "npu" else None
    return CompiledBlock(block=block.name, digest=block.digest, processor=processor.name,
                         target=canonical_target(processor.target), artifact=None, artifact_format="none",
                         runnable=False, cache_hit=False, compile_s=0.0, tuning_state="not compiled", offload=offload)


def runner_for(block: BlockSpec, processor: ProcessorSpec, compiled: CompiledBlock) -> Runner:
    """A callable running ``block`` on ``processor`` here; raises when the processor is absent."""
    if processor.executor == "torch":
        return torch_runner(block, processor)
    return backend_for(processor).load(compiled, processor)
