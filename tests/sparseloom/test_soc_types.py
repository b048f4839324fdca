"""The two views of an SoC (the YAML schema, the backends' dataclasses) convert both ways losslessly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backends.processor import SparsitySupport
from sparseloom.assemble import soc_schema, soc_spec
from sparseloom.workload import load_workload

SOCS = sorted((Path(__file__).parents[2] / "workloads" / "socs").glob("*.yaml"))


@pytest.mark.parametrize("path", SOCS, ids=[p.stem for p in SOCS])
def test_every_shipped_soc_survives_the_round_trip(path: Path) -> None:
    soc = load_workload(path).soc
    assert soc is not None
    spec = soc_spec(soc)
    assert soc_spec(soc_schema(spec)) == spec
    assert soc_schema(spec) == soc


def test_fields_the_pipeline_used_to_drop_come_back() -> None:
    soc = load_workload(SOCS[0]).soc
    assert soc is not None
    spec = soc_spec(soc)
    p = replace(spec.processors[0], launch_overhead_us=37.0, sparsity=SparsitySupport(0.9, 0.4, 0.6, 0.2),
                dtypes=("fp16",), ops=("conv2d", "linear"))
    back = soc_spec(soc_schema(replace(spec, processors=(p, *spec.processors[1:]))))
    assert back.processors[0] == p
