"""NPU offload decisions from BYOC pattern tables, and the modelled latency of the split block."""

from __future__ import annotations

import dataclasses
import math

import pytest

from backends.base import CompileOptions
from backends.block import BlockSpec
from backends.compile import import_block
from backends.costmodel import offload_ms
from backends.npu import CODEGEN, partition
from backends.processor import ProcessorSpec, TransferSpec, host_cpu
from backends.tvm_backends import backend_for


def test_conv_block_offloads_conv_relu_chains(cnn_block: BlockSpec, npu: ProcessorSpec, options: CompileOptions) -> None:
    block = dataclasses.replace(cnn_block, dtype="int8")
    compiled = backend_for(npu).compile(block, npu, options)
    plan = compiled.offload
    assert plan is not None
    assert plan.offloaded_ops.count("nn.conv2d") == 2 and plan.offloaded_ops.count("nn.relu") == 2
    assert "nn.conv2d" not in plan.fallback_ops
    assert plan.offloaded_flop_fraction > 0.99
    assert not compiled.runnable


def test_attention_block_falls_back_for_softmax_and_norms(attention_block: BlockSpec, npu: ProcessorSpec) -> None:
    mod, plan = partition(import_block(attention_block), npu.name, npu.ops or (), npu.dtypes, "int8")
    offloaded_funcs = [gv.name_hint for gv, f in mod.functions_items()
                       if f.attrs is not None and f.attrs.get("Codegen") == CODEGEN]
    assert offloaded_funcs, "matmuls should be marked for the NPU codegen"
    assert "matmul" in plan.offloaded_ops
    for op in ("nn.softmax", "nn.layer_norm", "nn.gelu"):
        assert op in plan.fallback_ops and op not in plan.offloaded_ops
    assert 0.5 < plan.offloaded_flop_fraction < 1.0
    assert plan.transitions >= 4  # CPU fallbacks interleave with NPU regions


def test_npu_without_the_dtype_offloads_nothing(attention_block: BlockSpec, npu: ProcessorSpec) -> None:
    _, plan = partition(import_block(attention_block), npu.name, npu.ops or (), npu.dtypes, "fp32")
    assert plan.offloaded_ops == () and plan.offloaded_flop_fraction == 0.0


def test_declared_ops_decide_offload(attention_block: BlockSpec, npu: ProcessorSpec) -> None:
    wider = npu.model_copy(update={"ops": (*(npu.ops or ()), "softmax", "layer_norm", "gelu")})
    _, plan = partition(import_block(attention_block), wider.name, wider.ops or (), wider.dtypes, "int8")
    assert "nn.softmax" in plan.offloaded_ops and "nn.layer_norm" in plan.offloaded_ops


def test_offload_latency_prices_both_sides(attention_block: BlockSpec, npu: ProcessorSpec) -> None:
    _, plan = partition(import_block(attention_block), npu.name, npu.ops or (), npu.dtypes, "int8")
    cpu = host_cpu(threads=1)
    fast = TransferSpec(latency_us=0.0, bandwidth_gbps=1e6)
    slow = TransferSpec(latency_us=500.0, bandwidth_gbps=1.0)
    t_fast = offload_ms(plan, npu, cpu, fast, "int8")
    t_slow = offload_ms(plan, npu, cpu, slow, "int8")
    assert math.isfinite(t_fast) and t_fast > 0
    assert t_slow - t_fast >= plan.transitions * 0.5  # each hand-over costs at least the 500 us latency


def test_profiler_plans_identical_npus_once_and_in_parallel(cnn_block: BlockSpec, attention_block: BlockSpec,
                                                            npu: ProcessorSpec, options: CompileOptions,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from backends import profiler as profiler_module
    from backends.processor import SoCSpec
    from backends.profiler import Profiler
    from backends.tvm_backends import plan_only

    twin = npu.model_copy(update={"name": "npu1"})
    other = npu.model_copy(update={"name": "npu-fp", "dtypes": ("int8", "fp32")})
    soc = SoCSpec(name="npus", memory_mb=1024.0, storage_read_gbps=1.0,
                  transfer=TransferSpec(latency_us=10.0, bandwidth_gbps=10.0), processors=(npu, twin, other), source="test")
    pairs = [(b, p) for b in (cnn_block, attention_block) for p in soc.processors]
    expected = [plan_only(b, p) for b, p in pairs]
    got = Profiler(soc, options, progress=False, compile_absent=False)._plan_only(pairs)
    assert [(c.processor, c.offload) for c in got] == [(c.processor, c.offload) for c in expected]
    # One worker path: the two identical NPUs cost one plan per block, the fp32-capable one its own.
    calls: list[str] = []
    monkeypatch.setattr(profiler_module.os, "sched_getaffinity", lambda _: {0})
    monkeypatch.setattr(profiler_module, "plan_only", lambda b, p: calls.append(p.name) or plan_only(b, p))
    Profiler(soc, options, progress=False, compile_absent=False)._plan_only(pairs)
    assert sorted(calls) == ["npu", "npu", "npu-fp", "npu-fp"]
