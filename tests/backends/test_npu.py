"""NPU offload decisions from BYOC pattern tables, and the modelled latency of the split block."""

from __future__ import annotations

import dataclasses
import math

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
    wider = dataclasses.replace(npu, ops=(*(npu.ops or ()), "softmax", "layer_norm", "gelu"))
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
