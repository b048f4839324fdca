"""Schedule rules that make untuned TVM CPU code fast.

The default Relax CPU pipeline leaves every kernel as a naive serial loop
nest (25-100x slower than torch). These rules give each fused kernel a
register-blocked, vectorised and parallel schedule without tuning:

* one reduction (matmul, conv, batch matmul): inline producers/epilogues,
  tile the last two spatial axes (vector lanes x rows), keep the
  accumulator tile in a local buffer, parallelise the outer tiles;
* injective kernels: fuse, parallelise and vectorise;
* softmax / layer norm style kernels: TVM's dlight ``cpu.Reduction`` rule.

It is a module pass applied after legalisation, like dlight's
``ApplyDefaultSchedule``; kernels already scheduled (for example from a
MetaSchedule database) are left alone.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_get_vector_width

_SPATIAL = 0
_REDUCE = 2
# Register tile of a matmul-like kernel: ROW_TILES[0] rows x COL_VECTORS vectors of accumulators.
COL_VECTORS = 1
ROW_TILES = (8, 4, 2)
# What a schedule primitive raises when a kernel does not fit the rule (ScheduleError is a RuntimeError).
_SCHEDULE_ERRORS = (RuntimeError, ValueError, TypeError)


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
    vec = _largest_divisor(_extent(sch, fused), (lanes, 8, 4))
    if vec > 1:
        outer, inner = sch.split(fused, [None, vec])
        sch.parallel(outer)
        sch.vectorize(inner)
    else:
        sch.parallel(fused)


def schedule_tiled_reduction(func: tirx.PrimFunc, lanes: int) -> s_tir.Schedule | None:
    """Register-blocked schedule for a kernel with exactly one reduction block."""
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
    vec = _largest_divisor(_extent(sch, spatial[-1]), (lanes * COL_VECTORS, lanes, 8, 4))
    j_outer, j_inner = sch.split(spatial[-1], [None, vec])
    if n_spatial >= 2:
        rows = _largest_divisor(_extent(sch, spatial[-2]), ROW_TILES)
        i_outer, i_inner = sch.split(spatial[-2], [None, rows])
        outer = spatial[:-2] + [i_outer, j_outer]
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


def schedule_injective(func: tirx.PrimFunc, lanes: int) -> s_tir.Schedule | None:
    """Fuse, parallelise and vectorise a kernel with no reduction."""
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


def _vector_lanes(target: tvm.target.Target) -> int:
    bits = int(llvm_get_vector_width(target)) if target.kind.name == "llvm" else 0
    return max((bits if bits > 0 else 128) // 32, 4)


@tvm.transform.module_pass(opt_level=0, name="SparseLoomCPUSchedule")
def apply_cpu_schedules(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Schedule every unscheduled PrimFunc of ``mod`` for the current llvm target."""
    target = tvm.target.Target.current(allow_none=False)
    lanes = _vector_lanes(target)
    fallback = dlight.cpu.Reduction()
    updated: dict[tvm.ir.GlobalVar, tirx.PrimFunc] = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
            continue
        sch = _first_schedule(func, target, lanes, fallback)
        if sch is not None:
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    for gvar, func in updated.items():
        mod[gvar] = func
    return mod


def schedule_with_rules(func: tirx.PrimFunc, target: tvm.target.Target) -> s_tir.Schedule | None:
    """The schedule these rules give one kernel (None when no rule fits)."""
    return _first_schedule(func, target, _vector_lanes(target), dlight.cpu.Reduction())


def _first_schedule(
    func: tirx.PrimFunc, target: tvm.target.Target, lanes: int, fallback: dlight.ScheduleRule
) -> s_tir.Schedule | None:
    for rule in (schedule_tiled_reduction, schedule_injective):
        try:
            sch = rule(func, lanes)
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
