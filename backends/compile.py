"""Blocks through TVM Relax: import from torch, pipelines per target, build and tune.

The passes are composed in one visible place (:func:`relax_pipeline`):
library dispatch -> legalise and fuse -> apply the tuning database (if any)
-> schedule rules -> lower -> finalise. llvm targets get SparseLoom's CPU
schedule rules (:mod:`backends.cpu_schedule`); GPU targets get TVM's
default pipeline for their kind, which applies dlight GPU schedules.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tvm
import tvm_ffi
from tvm import relax, te, topi
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.relax.frontend.torch import from_exported_program
from tvm.s_tir import meta_schedule as ms

from backends.block import BlockSpec
from backends.cpu_schedule import apply_cpu_schedules, schedule_with_rules
from backends.identity import has_records, pipeline_version
from backends.weight_layout import packed_matmul_legalizer
from stitching.atomic import write_json

CHOICES_FILE = "schedule_choices.json"


def make_target(target: dict[str, str | int]) -> tvm.target.Target:
    """A TVM target from the dict form used in SoC descriptions."""
    return tvm.target.Target(dict(target))


def import_block(block: BlockSpec) -> tvm.IRModule:
    """torch.export the block and convert it to a Relax module with weights as constants."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(block.module, block.example_inputs)
        return from_exported_program(program, keep_params_as_input=False)


def _fast_gelu(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    def te_gelu(x: te.Tensor) -> te.Tensor:
        erf = topi.fast_erf(x * tvm.tirx.const(0.5**0.5, x.dtype))
        return x * (tvm.tirx.const(0.5, x.dtype) + erf * tvm.tirx.const(0.5, x.dtype))

    return bb.call_te(te_gelu, call.args[0], primfunc_name_hint="gelu")


def _fast_softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    return bb.call_te(topi.nn.fast_softmax, call.args[0], int(call.attrs.axis), primfunc_name_hint="softmax")


# fp32 erf and exp lower to scalar libm calls that block vectorisation; TOPI's
# polynomial approximations (max error ~1e-6 relative) vectorise. Used on llvm targets.
FAST_MATH_LEGALIZE = {"relax.nn.gelu": _fast_gelu, "relax.nn.softmax": _fast_softmax}


def _legalize(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    legalize_map = dict(FAST_MATH_LEGALIZE, **{"relax.matmul": packed_matmul_legalizer(target)})
    return list(cpu_pipeline.library_dispatch_passes(target)) + [
        # Folds weight transposes first, so the matmul legaliser sees constant weights to pack.
        relax.transform.FoldConstant(),
        relax.transform.LegalizeOps(customize_legalize_map=legalize_map),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def relax_pipeline(target: tvm.target.Target, tuning_db: Path | None = None) -> tvm.transform.Pass:
    """The Relax pipeline for ``target``; tuned kernels come from ``tuning_db`` when given."""
    if target.kind.name != "llvm":
        return relax.pipeline.get_default_pipeline(target)

    @tvm.transform.module_pass(opt_level=0, name="SparseLoomCPUPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        passes = _legalize(target)
        if tuning_db is not None:
            passes.append(apply_tuned_schedules(tuning_db, target))
        passes.append(apply_cpu_schedules)
        passes += list(cpu_pipeline.dataflow_lower_passes(target))
        passes += list(cpu_pipeline.finalize_passes(target))
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def build(mod: tvm.IRModule, target: tvm.target.Target, tuning_db: Path | None = None) -> Any:
    """Compile a Relax module to a VM executable for ``target``."""
    return tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, tuning_db))


def tune(
    mod: tvm.IRModule,
    target: tvm.target.Target,
    tuning_db: Path,
    total_trials: int,
    max_trials_per_task: int | None = None,
    timeout_s: float = 300.0,
) -> list[str]:
    """MetaSchedule-tune the kernels of ``mod`` that ``tuning_db`` lacks; return their names.

    The JSON database keys records by each kernel's structural hash, so a
    kernel already tuned (in an earlier run, or for another block of the same
    shape) is reused and not tuned again. ``timeout_s`` bounds each candidate's
    build and run; MetaSchedule's 30 s default fails every build on a busy machine.
    """
    tuning_db.mkdir(parents=True, exist_ok=True)
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(mod)
    database = ms.database.JSONDatabase(work_dir=str(tuning_db))
    missing = [
        task
        for task in ms.relax_integration.extract_tasks(legal, target)
        if not database.has_workload(task.dispatched[0])
    ]
    if not missing or total_trials <= 0:
        return []
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted_tasks=missing, work_dir=str(tuning_db)
    )
    per_task = max_trials_per_task or max(1, total_trials // len(missing))
    ms.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=str(tuning_db),
        max_trials_global=total_trials,
        max_trials_per_task=per_task,
        num_trials_per_iter=min(64, per_task),
        database=database,
        builder=ms.builder.LocalBuilder(timeout_sec=int(timeout_s)),
        runner=ms.runner.LocalRunner(timeout_sec=int(timeout_s)),
    )
    return [task.task_name for task in missing]


def tuning_tasks(mod: tvm.IRModule, target: tvm.target.Target) -> list[str]:
    """Names of the kernels MetaSchedule would tune for ``mod`` on ``target``."""
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(mod)
    return sorted(gv.name_hint for gv, f in legal.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


def _workload(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    # The form MetaSchedule's task extraction commits to the database.
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def workload_key(func: tvm.tirx.PrimFunc) -> str:
    return str(tvm_ffi.structural_hash(_workload(func)))


def _stored_choices(tuning_db: Path) -> dict[str, dict[str, dict[str, object]]]:
    """Per target, the choices measured by this pipeline; {} (with a warning) for another's."""
    path = tuning_db / CHOICES_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        warnings.warn(f"{path}: unreadable ({err}); timing the schedule choices again", RuntimeWarning, stacklevel=3)
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        warnings.warn(f"{path}: not this version's format; timing the schedule choices again", RuntimeWarning, stacklevel=3)
        return {}
    if data.get("pipeline") != pipeline_version():
        warnings.warn(f"{path}: measured with another pipeline or TVM version ({data.get('pipeline')}); timing the "
                      "schedule choices again", RuntimeWarning, stacklevel=3)
        return {}
    return dict(data["targets"])


def read_choices(tuning_db: Path, target: tvm.target.Target) -> dict[str, dict[str, object]]:
    """The measured rules-vs-database choices for ``target``, per kernel. Choices measured by
    another pipeline or TVM version are dropped, with a warning, and timed again."""
    return dict(_stored_choices(tuning_db).get(str(target), {}))


def open_database(tuning_db: Path) -> ms.database.JSONDatabase | None:
    """The MetaSchedule records in ``tuning_db``, or None, with a warning, when this TVM cannot
    read them (another version's records): the rules schedule everything then."""
    try:
        return ms.database.JSONDatabase(work_dir=str(tuning_db))
    except (RuntimeError, ValueError, KeyError) as err:  # TVM raises its errors as RuntimeError subclasses
        warnings.warn(f"{tuning_db}: tuning records unreadable by TVM {tvm.__version__} ({str(err).splitlines()[0]}); "
                      "ignoring them", RuntimeWarning, stacklevel=2)
        return None


def apply_tuned_schedules(tuning_db: Path, target: tvm.target.Target) -> tvm.transform.Pass:
    """Schedule kernels from the MetaSchedule database, except where the rules were measured faster."""

    @tvm.transform.module_pass(opt_level=0, name="SparseLoomApplyTuned")
    def _apply(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        database = open_database(tuning_db) if has_records(tuning_db) else None
        if database is None:
            return mod
        choices = read_choices(tuning_db, target)
        updated = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            if choices.get(workload_key(func), {}).get("choice") == "rules":
                continue
            sch = database.query_schedule(_workload(func), target, workload_name="main")
            if sch is not None:
                updated[gvar] = sch.mod["main"].without_attr("global_symbol").with_attr("tirx.is_scheduled", True)
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod

    return _apply


def _time_kernel_us(func: tvm.tirx.PrimFunc, target: tvm.target.Target, repeats: int) -> float:
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = []
    for info in ms.arg_info.ArgInfo.from_prim_func(func):
        shape = [int(d) for d in info.shape]
        args.append(tvm.runtime.tensor(rng.standard_normal(shape).astype(str(info.dtype)), dev))
    timer = lib.mod.time_evaluator("main", dev, number=max(1, repeats // 5), repeat=5, min_repeat_ms=20)
    return float(np.median(timer(*args).results)) * 1e6


def choose_schedules(mod: tvm.IRModule, target: tvm.target.Target, tuning_db: Path, repeats: int = 20) -> dict[str, dict[str, object]]:
    """Time each tuned kernel against SparseLoom's rule schedule; remember the faster in the database folder.

    MetaSchedule with a small trial budget can lose to the hand-written
    rules; the choice is measured once per kernel shape and reused.
    """
    database = open_database(tuning_db) if has_records(tuning_db) else None
    if database is None:
        return {}
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(mod)
    choices = read_choices(tuning_db, target)
    for gvar, func in legal.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        key = workload_key(func)
        if key in choices:
            continue
        tuned = database.query_schedule(_workload(func), target, workload_name="main")
        ruled = schedule_with_rules(func, target)
        if tuned is None or ruled is None:
            continue
        tuned_us = _time_kernel_us(tuned.mod["main"], target, repeats)
        rules_us = _time_kernel_us(ruled.mod["main"], target, repeats)
        choices[key] = {"kernel": gvar.name_hint,
                        "choice": "database" if tuned_us < rules_us else "rules",
                        "tuned_us": tuned_us, "rules_us": rules_us}
    stored = _stored_choices(tuning_db)
    stored[str(target)] = choices
    write_json(tuning_db / CHOICES_FILE, {"pipeline": pipeline_version(), "targets": stored}, indent=1, sort_keys=True)
    return choices
