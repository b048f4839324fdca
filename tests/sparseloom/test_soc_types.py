"""The SoC types are defined once (backends.processor): the YAML validates into them, and a pipeline
over a built problem keeps every field of the SoC it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backends.processor import ProcessorSpec, SoCSpec, SparsitySupport
from sparseloom.workload import SoC, load_workload

SOCS = sorted((Path(__file__).parents[2] / "workloads" / "socs").glob("*.yaml"))


@pytest.mark.parametrize("path", SOCS, ids=[p.stem for p in SOCS])
def test_every_shipped_soc_is_the_backends_type_and_converts_losslessly(path: Path) -> None:
    soc = load_workload(path).soc
    assert isinstance(soc, SoCSpec) and all(type(p) is ProcessorSpec for p in soc.processors)
    plain = SoCSpec.model_validate(soc.model_dump())
    assert type(plain) is SoCSpec and plain.model_dump() == soc.model_dump()
    assert type(SoC.of(plain)) is SoC and SoC.of(plain).model_dump() == soc.model_dump()
    assert SoC.of(soc) is soc


def test_fields_the_pipeline_used_to_drop_come_back() -> None:
    soc = load_workload(SOCS[0]).soc
    assert soc is not None
    p = soc.processors[0].model_copy(update={
        "launch_overhead_us": 37.0, "sparsity": SparsitySupport(structured=0.9, unstructured=0.4, nm_2_4=0.6, block=0.2),
        "dtypes": ("fp16",), "ops": ("conv2d", "linear"), "references": ()})
    spec = SoCSpec.model_validate({**soc.model_dump(), "processors": (p, *soc.processors[1:])})
    assert SoC.of(spec).processors[0] == p


def test_code_building_an_soc_is_held_to_the_yaml_rules() -> None:
    # One definition means one set of bounds: a processor built in code without a source, or with a
    # sparsity fraction above 1, is refused as a YAML file saying so would be.
    with pytest.raises(ValidationError, match="source"):
        ProcessorSpec(name="cpu", kind="cpu", target="llvm", peak_gops={"fp32": 1.0}, memory_bandwidth_gbps=1.0)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        SparsitySupport(unstructured=2.0)
