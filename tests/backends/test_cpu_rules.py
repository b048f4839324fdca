"""CPU schedule rules: register tiles fit the target's vector registers, weights are packed into
the panels the tile reads, softmax and layer norm get the row-reduction rule, and all of it
computes what torch computes (ragged row counts included)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import tvm
from torch import nn

from backends.base import CompileOptions
from backends.block import make_block
from backends.cache import CompileCache
from backends.compile import _legalize, import_block, make_target
from backends.cpu_schedule import ACCUMULATOR_SHARE, VectorUnit, schedule_row_reduction, vector_unit
from backends.processor import host_cpu
from backends.tvm_backends import backend_for, runner_for

AVX512 = VectorUnit(lanes=16, registers=32)
AVX2 = VectorUnit(lanes=8, registers=16)


def test_vector_unit_comes_from_the_target_not_the_compiling_host() -> None:
    assert vector_unit(tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})) == AVX2
    assert vector_unit(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})) == AVX512
    arm = vector_unit(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}))
    assert arm == VectorUnit(lanes=4, registers=32)


@pytest.mark.parametrize("unit", [AVX512, AVX2, VectorUnit(4, 32)])
def test_the_accumulator_tile_takes_at_most_its_share_of_the_registers(unit: VectorUnit) -> None:
    for columns, rows in itertools.product((4, 8, 32, 96, 384, 1536, 3072), (1, 7, 49, 50, 64, 128)):
        width, height = unit.register_tile(columns, rows)
        assert columns % width == 0 and 1 <= height <= rows
        assert math.ceil(width / unit.lanes) * height <= unit.registers * ACCUMULATOR_SHARE


def test_tiles_are_two_vectors_wide_and_rows_fill_the_rest() -> None:
    assert AVX512.register_tile(1536, 128) == (32, 8)
    assert AVX2.register_tile(1536, 128) == (16, 4)
    # A row count without a divisor near the tile: an exact divisor down to half the tile...
    assert AVX512.register_tile(384, 49) == (32, 7)
    assert AVX512.register_tile(384, 50) == (32, 5)
    # ...else a full tile with a guarded last one, never 1-row tiles.
    assert AVX512.register_tile(384, 67) == (32, 8)
    # Columns that take one vector only.
    assert AVX512.register_tile(48, 128) == (16, 8)


class _Encoderish(nn.Module):
    """A matmul with a packable weight, softmax over rows, and layer norm: the kernels the rules change."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.softmax(self.up(x), dim=-1)
        return self.norm(x + self.down(h))


@pytest.mark.parametrize("rows", [49, 64])
def test_packed_weights_and_row_reductions_match_torch(tmp_path: Path, rows: int) -> None:
    torch.manual_seed(rows)
    block = make_block(f"enc{rows}", _Encoderish(64, 192).eval(), (torch.randn(1, rows, 64),))
    host = host_cpu(threads=1)
    target = make_target(host.target)
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(import_block(block))
    kernels = [gv.name_hint for gv, f in legal.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert any("matmul_packed" in k for k in kernels), kernels
    unit = vector_unit(target)
    for name in ("layer_norm", "softmax"):
        func = next(f for gv, f in legal.functions_items() if name in gv.name_hint and isinstance(f, tvm.tirx.PrimFunc))
        assert schedule_row_reduction(func, unit) is not None, name
    compiled = backend_for(host).compile(block, host, CompileOptions(cache=CompileCache(tmp_path)))
    (out,) = runner_for(block, host, compiled)(*block.example_inputs)
    with torch.no_grad():
        torch.testing.assert_close(out, block.module(*block.example_inputs), rtol=1e-4, atol=1e-4)


def test_row_reduction_rule_leaves_other_kernels_alone() -> None:
    torch.manual_seed(0)
    block = make_block("lin", nn.Sequential(nn.Linear(32, 32), nn.ReLU()).eval(), (torch.randn(4, 32),))
    target = make_target(host_cpu(threads=1).target)
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(import_block(block))
    unit = vector_unit(target)
    funcs = [f for _, f in legal.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs and all(schedule_row_reduction(f, unit) is None for f in funcs)
