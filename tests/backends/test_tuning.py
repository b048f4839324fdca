"""Tuning database reuse: a stored record is applied, nothing is re-tuned, choices are measured once.

MetaSchedule search takes minutes, so the test stores a record the way the
tuner does (workload + trace + run time, for this machine's target), using
the trace of a real schedule of the kernel, then checks the reuse path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import tvm
from tvm.s_tir import meta_schedule as ms

from backends.base import CompileOptions
from backends.block import make_block
from backends.cache import CompileCache
from backends.identity import tuning_state
from backends.compile import (
    _legalize,
    choose_schedules,
    import_block,
    make_target,
    read_choices,
    tune,
    tuning_tasks,
)
from backends.processor import host_cpu
from backends.tvm_backends import backend_for, runner_for


def _store_record(mod: tvm.IRModule, target: tvm.target.Target, db: Path) -> None:
    with target:
        legal = tvm.transform.Sequential(_legalize(target))(mod)
    db.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(db))
    for task in ms.relax_integration.extract_tasks(legal, target):
        workload = database.commit_workload(task.dispatched[0])
        sch = tvm.s_tir.Schedule(task.dispatched[0])
        block = sch.get_sblock("matmul")
        i, j, _k = sch.get_loops(block)
        sch.parallel(i)
        sch.vectorize(sch.split(j, [None, 4])[1])
        record = ms.database.TuningRecord(sch.trace, workload, [1e-6], target,
                                          ms.arg_info.ArgInfo.from_prim_func(task.dispatched[0]["main"]))
        database.commit_tuning_record(record)


def test_stored_tuning_is_reused_and_applied(tmp_path: Path) -> None:
    db = tmp_path / "db"
    torch.manual_seed(3)
    block = make_block("lin", torch.nn.Linear(16, 16), (torch.randn(4, 16),))
    host = host_cpu(threads=1)
    target = make_target(host.target)
    mod = import_block(block)
    _store_record(mod, target, db)
    assert tuning_tasks(mod, target) == ["fused_matmul_add"]
    # Every kernel is in the database: nothing to tune, whatever the budget.
    assert tune(mod, target, db, total_trials=64) == []

    choices = choose_schedules(mod, target, db, repeats=5)
    (choice,) = choices.values()
    assert choice["choice"] in ("database", "rules") and choice["tuned_us"] > 0 and choice["rules_us"] > 0
    assert read_choices(db, target) == choices

    untuned = CompileOptions(cache=CompileCache(tmp_path / "cache"))
    tuned = CompileOptions(cache=CompileCache(tmp_path / "cache"), tuning_db=db)
    a = backend_for(host).compile(block, host, untuned)
    b = backend_for(host).compile(block, host, tuned)
    assert a.tuning_state == "untuned" and b.tuning_state == tuning_state(db) != "untuned"
    assert a.artifact != b.artifact and tuned.cache.compiles == 1
    (out,) = runner_for(block, host, b)(*block.example_inputs)
    torch.testing.assert_close(out, block.module(*block.example_inputs).detach(), rtol=1e-4, atol=1e-4)


def test_new_shapes_are_reported_for_tuning(tmp_path: Path) -> None:
    block = make_block("lin", torch.nn.Linear(16, 8), (torch.randn(4, 16),))
    target = make_target(host_cpu(threads=1).target)
    # Zero budget: report nothing tuned, and leave the database empty.
    assert tune(import_block(block), target, tmp_path / "db", total_trials=0) == []
    records = tmp_path / "db" / "database_tuning_record.json"
    assert not records.exists() or records.read_text().strip() == ""


def test_choices_are_per_target_and_another_pipelines_are_timed_again_with_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "db"
    torch.manual_seed(4)
    block = make_block("lin", torch.nn.Linear(16, 16), (torch.randn(4, 16),))
    target = make_target(host_cpu(threads=1).target)
    mod = import_block(block)
    _store_record(mod, target, db)
    choices = choose_schedules(mod, target, db, repeats=5)
    assert read_choices(db, target) == choices
    other = make_target({"kind": "llvm", "mcpu": "haswell", "num-cores": 1})
    assert read_choices(db, other) == {}
    stored = json.loads((db / "schedule_choices.json").read_text())
    (db / "schedule_choices.json").write_text(json.dumps(dict(stored, pipeline="sparseloom-cpu-rules-old")))
    with pytest.warns(RuntimeWarning, match="another pipeline"):
        assert choose_schedules(mod, target, db, repeats=5).keys() == choices.keys()
    assert read_choices(db, target).keys() == choices.keys()


def test_unreadable_records_are_ignored_with_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / "database_workload.json").write_text("not a workload\n")
    (db / "database_tuning_record.json").write_text("[0, [\"not a record\"]]\n")
    torch.manual_seed(5)
    block = make_block("lin", torch.nn.Linear(16, 16), (torch.randn(4, 16),))
    host = host_cpu(threads=1)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        compiled = backend_for(host).compile(block, host, CompileOptions(cache=CompileCache(tmp_path / "c"), tuning_db=db))
    (out,) = runner_for(block, host, compiled)(*block.example_inputs)
    torch.testing.assert_close(out, block.module(*block.example_inputs).detach(), rtol=1e-4, atol=1e-4)
