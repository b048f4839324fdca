"""Code generation for processors that are not here: CUDA source, aarch64 and Hexagon objects."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
import tvm

from backends.base import CompileOptions
from backends.block import BlockSpec
from backends.compile import build, import_block, make_target
from backends.link import ELF_MACHINE, read_elf_header
from backends.processor import PeakRates, ProcessorSpec
from backends.tvm_backends import backend_for, device_source, runner_for


def _objects(archive: Path, dest: Path) -> list[Path]:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return sorted(p for p in dest.iterdir() if p.suffix == ".o")


def _proc(name: str, kind: str, target: dict[str, str | int]) -> ProcessorSpec:
    return ProcessorSpec(name=name, kind=kind, target=target, peak_gops=PeakRates(fp32=100.0), memory_bandwidth_gbps=10.0,
                         source="test")


def test_cuda_codegen_produces_cuda_source(cnn_block: BlockSpec, options: CompileOptions) -> None:
    target = make_target({"kind": "cuda", "arch": "sm_80"})
    source = device_source(build(import_block(cnn_block), target))
    assert "__global__" in source and "extern \"C\"" in source
    gpu = _proc("gpu", "gpu", {"kind": "cuda", "arch": "sm_80"})
    compiled = backend_for(gpu).compile(cnn_block, gpu, options)
    assert compiled.artifact is not None and compiled.artifact.exists()
    if not tvm.cuda(0).exist:
        assert not compiled.runnable
        with pytest.raises(RuntimeError):
            runner_for(cnn_block, gpu, compiled)
    else:  # a GPU machine: run it and compare with torch
        (out,) = runner_for(cnn_block, gpu, compiled)(*cnn_block.example_inputs)
        torch.testing.assert_close(out, cnn_block.module(*cnn_block.example_inputs).detach(), rtol=1e-3, atol=1e-3)


def test_hexagon_objects_are_hexagon_elf(cnn_block: BlockSpec, options: CompileOptions, tmp_path: Path) -> None:
    dsp = _proc("hvx", "dsp", {"kind": "llvm", "mtriple": "hexagon", "mcpu": "hexagonv68"})
    compiled = backend_for(dsp).compile(cnn_block, dsp, options)
    assert compiled.artifact_format == "tar" and not compiled.runnable
    objects = _objects(compiled.artifact, tmp_path)  # type: ignore[arg-type]
    headers = [read_elf_header(o) for o in objects]
    assert headers and all(h.e_machine == ELF_MACHINE["hexagon"] and h.elf_class == 1 for h in headers)
    assert all(h.e_type == 1 for h in headers)  # relocatable objects, ready for the Hexagon linker


def test_aarch64_cross_compile_exports_arm_objects(cnn_block: BlockSpec, options: CompileOptions, tmp_path: Path) -> None:
    arm = _proc("a78", "cpu", {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a78"})
    backend = backend_for(arm)
    assert not backend.present(arm)
    compiled = backend.compile(cnn_block, arm, options)
    objects = _objects(compiled.artifact, tmp_path)  # type: ignore[arg-type]
    assert any(read_elf_header(o).e_machine == ELF_MACHINE["aarch64"] for o in objects)


def test_elf_reader_rejects_non_elf(tmp_path: Path) -> None:
    path = tmp_path / "x.o"
    path.write_bytes(b"not an elf file at all")
    with pytest.raises(ValueError):
        read_elf_header(path)


@pytest.mark.parametrize("target", [{"kind": "opencl", "device": "adreno"}, {"kind": "opencl"}])
def test_opencl_codegen_produces_kernels(cnn_block: BlockSpec, target: dict[str, str | int]) -> None:
    # Adreno goes through TVM's adreno pipeline (texture-aware dlight rules), plain OpenCL through dlight GPU rules.
    source = device_source(build(import_block(cnn_block), make_target(target)))
    assert "__kernel" in source


def test_another_chip_of_the_host_architecture_is_modelled_not_measured() -> None:
    import platform

    from backends.processor import host_cpu

    backend = backend_for(host_cpu())
    assert backend.present(host_cpu())
    assert backend.present(_proc("plain", "cpu", {"kind": "llvm"}))
    triple = f"{platform.machine().lower()}-linux-gnu"
    other = "alderlake" if host_cpu().target["mcpu"] != "alderlake" else "znver3"
    assert not backend.present(_proc("other", "cpu", {"kind": "llvm", "mtriple": triple, "mcpu": other}))
