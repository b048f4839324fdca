"""Small blocks and processors shared by the backend tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backends.base import CompileOptions
from backends.block import BlockSpec, make_block
from backends.cache import CompileCache
from backends.processor import PeakRates, ProcessorSpec, SoCSpec, TransferSpec, host_cpu


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class TinyAttention(nn.Module):
    """One post-norm encoder layer: attention, then FFN."""

    def __init__(self, hidden: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.ffn1 = nn.Linear(hidden, 2 * hidden)
        self.ffn2 = nn.Linear(2 * hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (h // self.heads) ** 0.5, dim=-1) @ v
        x = self.ln1(x + self.out(att.transpose(1, 2).reshape(b, t, h)))
        return self.ln2(x + self.ffn2(nn.functional.gelu(self.ffn1(x))))


@pytest.fixture
def cnn_block() -> BlockSpec:
    torch.manual_seed(0)
    return make_block("tiny_cnn", TinyCNN(), (torch.randn(1, 1, 8, 8),))


@pytest.fixture
def attention_block() -> BlockSpec:
    torch.manual_seed(1)
    return make_block("tiny_attention", TinyAttention(), (torch.randn(1, 16, 32),))


@pytest.fixture
def options(tmp_path: Path) -> CompileOptions:
    return CompileOptions(cache=CompileCache(tmp_path / "cache"), cross_link=False)


@pytest.fixture
def host() -> ProcessorSpec:
    return host_cpu(threads=1)


@pytest.fixture
def npu() -> ProcessorSpec:
    return ProcessorSpec(
        name="npu", kind="npu", target={"kind": "llvm"}, peak_gops=PeakRates(fp32=0.0, fp16=0.0, int8=4000.0),
        memory_bandwidth_gbps=30.0, launch_overhead_us=50.0, dtypes=("int8",),
        ops=("conv2d", "linear", "matmul", "add", "relu"), source="test",
    )


@pytest.fixture
def soc(host: ProcessorSpec) -> SoCSpec:
    gpu = ProcessorSpec(name="gpu", kind="gpu", target={"kind": "cuda", "arch": "sm_80"},
                        peak_gops=PeakRates(fp32=1000.0, fp16=2000.0), memory_bandwidth_gbps=100.0,
                        launch_overhead_us=20.0, source="test")
    torch_cpu = host_cpu("host-torch", executor="torch", threads=1)
    return SoCSpec(name="test-soc", memory_mb=4096.0, storage_read_gbps=1.0,
                   transfer=TransferSpec(latency_us=50.0, bandwidth_gbps=10.0), processors=(host, torch_cpu, gpu), source="test")
