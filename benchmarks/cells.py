"""A benchmark cell, "SCENARIO:SOC": a shipped scenario on a shipped SoC file, assembled from the cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sparseloom.assemble import Assembled, assemble
from sparseloom.workload import Workload, load_workload
from stitching.zoo import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]


def add_scenario_arguments(ap: argparse.ArgumentParser) -> None:
    """The --seeds and --duration options every cell benchmark takes."""
    ap.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the scenario's)")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")


def header(cell: str, workload: Workload, what: str) -> str:
    """The line above a cell's table."""
    sc = workload.scenario
    assert sc is not None
    return f"\n{cell} ({sc.seeds} seeds x {sc.duration_s:g} s), {what}"


def load_cell(cell: str, **scenario: Any) -> tuple[Workload, Assembled, Path]:
    """The workload (its scenario updated with the ``scenario`` settings that are not None), its
    assembled problem on the SoC, and the workload file's path."""
    name, soc_name = cell.split(":")
    path = ROOT / "workloads" / "scenarios" / f"{name}.yaml"
    workload = load_workload(path)
    soc = load_workload(ROOT / "workloads" / "socs" / f"{soc_name}.yaml").soc
    assert workload.scenario is not None and soc is not None
    update = {k: v for k, v in scenario.items() if v is not None}
    workload = workload.model_copy(update={"scenario": workload.scenario.model_copy(update=update)})
    assembled = assemble(workload, base_dir=path.parent, cache_dir=default_cache_dir(), soc=soc, progress=False)
    return workload, assembled, path
