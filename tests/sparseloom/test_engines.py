"""The process pool and Ray give the same figures for the same seeds; Ray's failures are clear."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from scheduler import registry
from sparseloom.cli import main
from sparseloom.errors import InputError
from sparseloom.sim import Engine, Experiment, RunResult
from sparseloom.sim.cluster import check_address, ray_map
from sparseloom.sim.sweep import SweepPoint, run_sweep
from tests.sparseloom.test_simulator_sweep import make_case

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
# Wall-clock figures: measured, so they differ between any two runs.
MEASURED = {"decision_us_p50": 0.0, "decision_us_p99": 0.0, "replan_ms": (), "sim_wall_s": 0.0, "plan_wall_s": 0.0}


def _modelled(run: RunResult) -> dict:
    return dataclasses.asdict(dataclasses.replace(run, **MEASURED))  # type: ignore[arg-type]


def _same(a: object, b: object) -> bool:
    """Equal to the last bit, through dicts, sequences and arrays (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


@pytest.fixture(scope="module")
def ray_local():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    import ray

    yield ray
    ray.shutdown()


@needs_ray
def test_a_sweep_on_ray_gives_every_figure_the_process_pool_gives(ray_local) -> None:  # type: ignore[no-untyped-def]
    problem, _, specs = make_case()
    policies = [registry.create("sv-lo-np"), registry.create("sparseloom")]
    points = [SweepPoint(rate_scale=0.5), SweepPoint(rate_scale=2.0)]

    def sweep(engine: Engine):  # type: ignore[no-untyped-def]
        return run_sweep(problem, policies, specs, points, Experiment(duration_s=5.0, warmup_s=0.5, seeds=2), workers=2,
                         progress=False, engine=engine)

    local, on_ray = sweep(Engine()), sweep(Engine("ray"))
    assert ray_local.is_initialized()
    for (p1, c1), (p2, c2) in zip(local, on_ray, strict=True):
        assert p1 == p2 and c1.unavoidable == c2.unavoidable
        for name in c1.policies:
            runs1 = [_modelled(r) for r in c1.policies[name].runs]
            runs2 = [_modelled(r) for r in c2.policies[name].runs]
            assert len(runs1) == 2 and _same(runs1, runs2)
            assert not _same(runs1[0], runs1[1])  # the seeds differ, so the comparison can tell


def _dies_once(marker: str) -> int:
    """Kills its worker the first time it runs (the marker file says it has run); returns its pid after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return os.getpid()


@needs_ray
def test_a_job_whose_worker_dies_is_retried_and_counted_once(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class Bar:
        ticks = 0

        def update(self) -> None:
            self.ticks += 1

    bar = Bar()
    out = ray_map(_dies_once, [str(tmp_path / "a"), str(tmp_path / "b")], None, bar)
    assert len(out) == 2 and bar.ticks == 2
    assert (tmp_path / "a").read_text() == "died"


def test_an_address_nothing_answers_at_fails_fast_by_name() -> None:
    with pytest.raises(InputError, match="127.0.0.1:9"):
        check_address("127.0.0.1:9")
    with pytest.raises(InputError, match="host:port"):
        check_address("no-port-here")


def test_ray_flags_without_ray_or_without_the_engine_exit_2(repo_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    workload = str(repo_root / "workloads" / "scenarios" / "quickstart.yaml")
    assert main(["sweep", workload, "--address", "127.0.0.1:6379"]) == 2
    assert "--address" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["simulate", workload, "--engine", "ray"]) == 2
    assert "sparseloom[cluster]" in capsys.readouterr().err
