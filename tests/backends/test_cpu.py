"""Host CPU: TVM output matches torch, the cache serves a second compile, the torch executor is the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backends.base import CompileOptions
from backends.block import BlockSpec, make_block, state_dict_digest
from backends.cache import CompileCache
from backends.processor import ProcessorSpec, host_cpu
from backends.tvm_backends import TorchBackend, backend_for, runner_for


def _reference(block: BlockSpec) -> torch.Tensor:
    with torch.no_grad():
        return block.module(*block.example_inputs)


def test_cpu_compile_and_run_matches_torch(cnn_block: BlockSpec, attention_block: BlockSpec,
                                           host: ProcessorSpec, options: CompileOptions) -> None:
    for block in (cnn_block, attention_block):
        compiled = backend_for(host).compile(block, host, options)
        assert compiled.runnable and compiled.artifact is not None and compiled.artifact.exists()
        (out,) = runner_for(block, host, compiled)(*block.example_inputs)
        torch.testing.assert_close(out, _reference(block), rtol=1e-4, atol=1e-4)


def test_second_compile_hits_the_cache(cnn_block: BlockSpec, host: ProcessorSpec, options: CompileOptions) -> None:
    first = backend_for(host).compile(cnn_block, host, options)
    assert not first.cache_hit and options.cache.compiles == 1
    # A fresh cache object over the same directory: a new run of the profiler.
    again = CompileOptions(cache=CompileCache(options.cache.root))
    second = backend_for(host).compile(cnn_block, host, again)
    assert second.cache_hit and again.cache.compiles == 0 and second.artifact == first.artifact
    # Another target is another key.
    other = host_cpu("other", threads=2)
    assert not backend_for(other).compile(cnn_block, other, again).cache_hit


def test_digest_follows_weights(cnn_block: BlockSpec) -> None:
    state = {k: v.clone() for k, v in cnn_block.module.state_dict().items()}
    assert state_dict_digest(state) == cnn_block.digest
    state["conv1.bias"][0] += 1.0
    assert state_dict_digest(state) != cnn_block.digest


def test_flops_counted_for_conv(cnn_block: BlockSpec) -> None:
    # conv1: 2*8*64*9*1, conv2: 2*16*64*9*8
    assert cnn_block.flops == 2 * 8 * 64 * 9 + 2 * 16 * 64 * 9 * 8


def test_torch_executor_is_selected_and_runs(attention_block: BlockSpec, options: CompileOptions) -> None:
    proc = host_cpu("eager", executor="torch", threads=1)
    assert isinstance(backend_for(proc), TorchBackend)
    compiled = backend_for(proc).compile(attention_block, proc, options)
    (out,) = runner_for(attention_block, proc, compiled)(*attention_block.example_inputs)
    torch.testing.assert_close(out, _reference(attention_block))
    assert options.cache.compiles == 0


def test_structured_block_has_fewer_flops() -> None:
    dense = make_block("d", torch.nn.Linear(64, 64), (torch.randn(4, 64),))
    half = make_block("h", torch.nn.Linear(64, 32), (torch.randn(4, 64),), pattern="structured", level=0.5)
    assert half.flops == dense.flops / 2


def test_an_altered_artifact_or_record_is_compiled_again_with_a_warning(cnn_block: BlockSpec, host: ProcessorSpec,
                                                                         options: CompileOptions) -> None:
    from stitching.sealed import SealWarning

    first = backend_for(host).compile(cnn_block, host, options)
    assert first.artifact is not None
    artifact = Path(first.artifact)
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte of machine code changed
    artifact.write_bytes(bytes(data))
    again = CompileOptions(cache=CompileCache(options.cache.root))
    with pytest.warns(SealWarning, match=artifact.name):
        second = backend_for(host).compile(cnn_block, host, again)
    assert not second.cache_hit and again.cache.compiles == 1
    record = next(p for p in options.cache.root.glob("*.json") if artifact.stem in p.name)
    record.write_text(record.read_text().replace('"compile_s"', '"compile_t"'))
    third = CompileOptions(cache=CompileCache(options.cache.root))
    with pytest.warns(SealWarning, match=record.name):
        assert not backend_for(host).compile(cnn_block, host, third).cache_hit
    fourth = CompileOptions(cache=CompileCache(options.cache.root))
    assert backend_for(host).compile(cnn_block, host, fourth).cache_hit
