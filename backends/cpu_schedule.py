"""Schedule rules that make untuned TVM CPU code fast.

The default Relax CPU pipeline leaves every kernel as a naive serial loop
nest (25-100x slower than torch). These rules give each fused kernel a
register-blocked, vectorised and parallel schedule without tuning:

* one reduction (matmul, conv, batch matmul): inline producers/epilogues,
  tile the last two spatial axes into a register tile (rows x vectors of
  columns) that fills half the vector registers, walk the tiles
  column-panel by column-panel, keep the accumulator tile in a local
  buffer, parallelise the outer tiles;
* injective kernels: fuse, parallelise and vectorise;
* softmax / layer norm style kernels: TVM's dlight ``cpu.Reduction`` rule.

It is a module pass applied after legalisation, like dlight's
``ApplyDefaultSchedule``; kernels already scheduled (for example from a
MetaSchedule database) are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_cpu_has_features, llvm_get_system_triple, llvm_get_vector_width

_SPATIAL = 0
_REDUCE = 2
# Register tile of a matmul-like kernel: up to COL_VECTORS vectors of columns x ROW_TILES rows.
# Two vectors of columns make the tile 2 x lanes wide, so each broadcast of an input row feeds two FMAs.
COL_VECTORS = (2, 1)
ROW_TILES = (8, 4, 2)
# Accumulators take at most half the vector registers: the rest hold the weight vectors of the
# current k and the broadcast input, and spare LLVM a spill. benchmarks/cpu_tiles.py times the
# tiles around this choice on the host.
ACCUMULATOR_SHARE = 0.5
# What a schedule primitive raises when a kernel does not fit the rule (ScheduleError is a RuntimeError).
_SCHEDULE_ERRORS = (RuntimeError, ValueError, TypeError)


@dataclass(frozen=True)
class VectorUnit:
    """What a target's vector unit offers a schedule: fp32 lanes per register and register count."""

    lanes: int
    registers: int

    def register_tile(self, columns: int | None, rows: int | None) -> tuple[int, int]:
        """(vector width in columns, rows) of the accumulator tile for a columns x rows output."""
        budget = int(self.registers * ACCUMULATOR_SHARE)
        width = _largest_divisor(columns, tuple(v * self.lanes for v in COL_VECTORS) + (8, 4))
        vectors = max(1, width // self.lanes)
        most = max([r for r in ROW_TILES if r * vectors <= budget] or [1])
        if rows is None:
            return width, 1
        if rows <= most:
            return width, rows
        # An exact divisor down to half the tile keeps the loads per FMA; below that a full tile
        # with a guarded last one is faster (49 rows, measured: 8-row tiles 1.68 ms, 1-row 39 ms).
        exact = [r for r in range(most, most // 2, -1) if rows % r == 0]
        return width, exact[0] if exact else most


def _extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _largest_divisor(extent: int | None, candidates: tuple[int, ...]) -> int:
    for c in candidates:
        if extent is not None and extent % c == 0:
            return c
    return 1


def _blocks(sch: s_tir.Schedule) -> list[s_tir.schedule.SBlockRV]:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    return any(iv.iter_type == _REDUCE for iv in sch.get(block).iter_vars)


def _schedule_injective_block(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    sch.parallel(_vectorize_inner(sch, fused, lanes))


def schedule_tiled_reduction(func: tirx.PrimFunc, unit: VectorUnit) -> s_tir.Schedule | None:
    """Register-blocked schedule for a kernel with exactly one reduction block."""
    lanes = unit.lanes
    sch = s_tir.Schedule(func)
    blocks = _blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) != 1:
        return None
    red = reductions[0]
    red_name = sch.get(red).name_hint
    for block in blocks:
        name = sch.get(block).name_hint
        # Padding stays a separate (parallel) pass: inlined, it puts a branch in the inner loop.
        if name == red_name or "pad" in name:
            continue
        try:
            sch.compute_inline(block)
        except _SCHEDULE_ERRORS:
            try:
                sch.reverse_compute_inline(block)
            except _SCHEDULE_ERRORS:
                pass
    kinds = [int(iv.iter_type) for iv in sch.get(red).iter_vars]
    loops = sch.get_loops(red)
    n_spatial = kinds.count(_SPATIAL)
    if len(loops) != len(kinds) or n_spatial == 0 or kinds != [_SPATIAL] * n_spatial + [_REDUCE] * (
        len(kinds) - n_spatial
    ):
        return None
    spatial, reduce = list(loops[:n_spatial]), list(loops[n_spatial:])
    write_back = sch.cache_write(red, 0, "local")
    vec, rows = unit.register_tile(_extent(sch, spatial[-1]), _extent(sch, spatial[-2]) if n_spatial >= 2 else 1)
    j_outer, j_inner = sch.split(spatial[-1], [None, vec])
    if n_spatial >= 2:
        i_outer, i_inner = sch.split(spatial[-2], [None, rows])
        # Column panels outermost: one panel of weights (k x vec) serves every row tile in turn
        # while it is in cache; rows outermost re-streams all the weights per row tile.
        outer = spatial[:-2] + [j_outer, i_outer]
        inner = [i_inner, j_inner]
    else:
        outer, inner = [j_outer], [j_inner]
    sch.reorder(*outer, *reduce, *inner)
    tile = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    sch.parallel(tile)
    if vec > 1:
        sch.vectorize(j_inner)
    if len(inner) == 2:
        sch.unroll(inner[0])
    sch.reverse_compute_at(write_back, tile)
    wb_loops = sch.get_loops(write_back)[1:]
    if wb_loops:
        wb = sch.fuse(*wb_loops) if len(wb_loops) > 1 else wb_loops[0]
        if vec > 1 and (_extent(sch, wb) or 0) % vec == 0:
            _, wb_inner = sch.split(wb, [None, vec])
            sch.vectorize(wb_inner)
    sch.decompose_reduction(red, reduce[0])
    for block in _blocks(sch):
        if "pad" in sch.get(block).name_hint:
            _schedule_injective_block(sch, block, lanes)
    return sch


def schedule_injective(func: tirx.PrimFunc, unit: VectorUnit) -> s_tir.Schedule | None:
    """Fuse, parallelise and vectorise a kernel with no reduction."""
    lanes = unit.lanes
    sch = s_tir.Schedule(func)
    blocks = _blocks(sch)
    if any(_is_reduction(sch, b) for b in blocks):
        return None
    for block in blocks[:-1]:
        try:
            sch.compute_inline(block)
        except _SCHEDULE_ERRORS:
            pass
    for block in _blocks(sch):
        _schedule_injective_block(sch, block, lanes)
    return sch


def _triple(target: tvm.target.Target) -> str:
    triple = str(target.attrs.get("mtriple", "")) if target.attrs is not None else ""
    return triple or str(llvm_get_system_triple())


def _vector_bits(target: tvm.target.Target) -> int:
    if target.kind.name != "llvm":
        return 128
    if _triple(target).startswith(("x86_64", "i686", "i386")):
        # From the target's own features: LLVM's vector-width query answers with the compiling
        # host's width (512 on an AVX-512 host even for mcpu=haswell).
        if llvm_cpu_has_features(["avx512f"], target):
            return 512
        return 256 if llvm_cpu_has_features(["avx"], target) else 128
    bits = int(llvm_get_vector_width(target))
    return bits if bits > 0 else 128


def vector_unit(target: tvm.target.Target) -> VectorUnit:
    """The vector unit of an llvm target. AVX-512, Arm (NEON/SVE) and Hexagon HVX have 32
    vector registers; SSE and AVX2 have 16."""
    bits = _vector_bits(target)
    wide_file = bits >= 512 or _triple(target).startswith(("aarch64", "arm64", "hexagon"))
    return VectorUnit(lanes=max(bits // 32, 4), registers=32 if wide_file else 16)


@tvm.transform.module_pass(opt_level=0, name="SparseLoomCPUSchedule")
def apply_cpu_schedules(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Schedule every unscheduled PrimFunc of ``mod`` for the current llvm target."""
    target = tvm.target.Target.current(allow_none=False)
    unit = vector_unit(target)
    fallback = dlight.cpu.Reduction()
    updated: dict[tvm.ir.GlobalVar, tirx.PrimFunc] = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
            continue
        sch = _first_schedule(func, target, unit, fallback)
        if sch is not None:
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    for gvar, func in updated.items():
        mod[gvar] = func
    return mod


def schedule_with_rules(func: tirx.PrimFunc, target: tvm.target.Target) -> s_tir.Schedule | None:
    """The schedule these rules give one kernel (None when no rule fits)."""
    return _first_schedule(func, target, vector_unit(target), dlight.cpu.Reduction())


def _first_schedule(
    func: tirx.PrimFunc, target: tvm.target.Target, unit: VectorUnit, fallback: dlight.ScheduleRule
) -> s_tir.Schedule | None:
    for rule in (schedule_tiled_reduction, schedule_row_reduction, schedule_injective):
        try:
            sch = rule(func, unit)
        except _SCHEDULE_ERRORS:
            # A rule that does not fit this kernel's structure; the next one may.
            sch = None
        if sch is not None:
            return sch
    try:
        result = fallback.apply(func, target, False)
    except _SCHEDULE_ERRORS:
        return None
    if isinstance(result, list):
        return result[0] if result else None
    return result


def schedule_row_reduction(func: tirx.PrimFunc, unit: VectorUnit) -> s_tir.Schedule | None:
    """Softmax / layer-norm style kernels: reductions over the last axis feeding a row-wise epilogue.

    One parallel loop over rows; every block computed inside it; each reduction split into
    ``lanes`` vector partial results (rfactor) so it vectorises, the rest vectorised directly.
    """
    sch = s_tir.Schedule(func)
    blocks = _blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) < 2 or _is_reduction(sch, blocks[-1]):
        return None
    rows_rank: int | None = None
    for red in reductions:
        kinds = [int(iv.iter_type) for iv in sch.get(red).iter_vars]
        if kinds[-1] != _REDUCE or kinds[:-1] != [_SPATIAL] * (len(kinds) - 1):
            return None
        if rows_rank not in (None, len(kinds) - 1):
            return None
        rows_rank = len(kinds) - 1
    assert rows_rank is not None
    # Elementwise steps with one consumer fold into it (a subtraction into the exp that reads it).
    for block in blocks[:-1]:
        if not _is_reduction(sch, block) and len(sch.get_consumers(block)) == 1:
            try:
                sch.compute_inline(block)
            except _SCHEDULE_ERRORS:
                pass
    try:
        sch.reverse_compute_inline(_blocks(sch)[-1])
    except _SCHEDULE_ERRORS:
        pass
    # Each reduction over a row becomes lanes partial results (one vector of accumulators, each
    # over every lanes-th element) and a short final sum over them.
    partials = set()
    for block in _blocks(sch):
        if not _is_reduction(sch, block):
            continue
        k = sch.get_loops(block)[-1]
        extent = _extent(sch, k)
        if extent is None or extent % unit.lanes != 0 or extent == unit.lanes:
            continue
        _, k_inner = sch.split(k, [None, unit.lanes])
        partials.add(sch.get(sch.rfactor(k_inner, factor_axis=0)).name_hint)
    blocks = _blocks(sch)
    anchor = blocks[-1]
    loops = sch.get_loops(anchor)
    if len(loops) != rows_rank + 1:
        return None
    row = sch.fuse(*loops[:rows_rank]) if rows_rank > 1 else loops[0]
    sch.parallel(row)
    _vectorize_inner(sch, sch.get_loops(anchor)[-1], unit.lanes)
    for block in reversed(blocks[:-1]):
        sch.compute_at(block, row)
        inner = sch.get_loops(block)[1:]
        if sch.get(block).name_hint in partials:
            # compute_at lays the loops out in iteration order (lanes, then k): put k outside.
            lanes_loop, k_loop = inner[-2], inner[-1]
            sch.reorder(k_loop, lanes_loop)
            sch.vectorize(lanes_loop)
        elif inner and not _is_reduction(sch, block):
            _vectorize_inner(sch, inner[-1], unit.lanes)
    return sch


def _vectorize_inner(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV, lanes: int) -> s_tir.schedule.LoopRV:
    """Split off and vectorise the largest vector that divides ``loop``; return what is left outside."""
    vec = _largest_divisor(_extent(sch, loop), (lanes, 8, 4))
    if vec == 1:
        return loop
    outer, inner = sch.split(loop, [None, vec])
    sch.vectorize(inner)
    return outer
