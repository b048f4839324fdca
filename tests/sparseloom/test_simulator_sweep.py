"""Sweeps: points change load, SLOs and memory as asked; parallel runs equal serial ones."""

from __future__ import annotations

from scheduler.problem import Problem
from sparseloom.sim import Comparison, Experiment, SLOChangeEvent
from sparseloom.sim.sweep import SweepPoint, apply_point, run_sweep
from sparseloom.workload import Poisson
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def make_case() -> tuple[Problem, FixedPolicy, dict[str, Poisson]]:
    tasks = [
        chain_task("a", [{"cpu": 4.0}, {"gpu": 3.0}], memory_mb=10.0, slo_ms=15.0),
        chain_task("b", [{"gpu": 2.0}], memory_mb=10.0, slo_ms=8.0),
    ]
    problem = problem_of(
        tasks, ["cpu", "gpu"], memory_budget_mb=30.0, storage_mb_per_ms=2.0
    )
    policy = FixedPolicy(
        "fixed", {"a": ((0, 0), ("cpu", "gpu")), "b": ((0,), ("gpu",))}
    )
    specs = {
        "a": Poisson(process="poisson", rate_hz=60.0),
        "b": Poisson(process="poisson", rate_hz=80.0),
    }
    return problem, policy, specs


def test_apply_point_scales_rates_slos_and_budget() -> None:
    problem, _, _ = make_case()
    moved = apply_point(problem, SweepPoint(2.0, 0.5, 12.0))
    assert [t.rate_hz for t in moved.tasks] == [20.0, 20.0]
    assert [t.latency_slo_ms for t in moved.tasks] == [7.5, 4.0]
    assert moved.memory_budget_mb == 12.0
    assert SweepPoint(2.0, 0.5, 12.0).label == "load x2, SLO x0.5, 12 MB"


def test_sweep_load_slo_and_memory_in_parallel() -> None:
    problem, policy, specs = make_case()
    points = [
        SweepPoint(rate_scale=0.5),
        SweepPoint(rate_scale=1.5),
        SweepPoint(slo_scale=3.0),
        SweepPoint(memory_budget_mb=10.0),
    ]
    change = [SLOChangeEvent(5_000.0, "b", latency_ms=6.0)]

    def sweep(workers: int) -> list[tuple[SweepPoint, Comparison]]:
        return run_sweep(
            problem,
            [policy],
            specs,
            points,
            Experiment(duration_s=20.0, warmup_s=1.0, seeds=2, slo_changes=change),
            workers=workers,
            progress=False,
        )

    parallel, serial = sweep(2), sweep(1)
    assert [p for p, _ in parallel] == points
    viol = [c.policies["fixed"].slo_violation_rate.mean for _, c in parallel]
    assert viol == [c.policies["fixed"].slo_violation_rate.mean for _, c in serial]
    base_offered = parallel[2][1].policies["fixed"].runs[0].offered_rps
    assert parallel[0][1].policies["fixed"].runs[0].offered_rps < 0.6 * base_offered
    assert viol[0] < viol[1]  # more load, more violations
    assert viol[2] < viol[1]  # looser SLOs, fewer violations
    tight = parallel[3][1].policies["fixed"]
    assert tight.peak_memory_mb.mean <= 10.0 and tight.runs[0].evictions > 0
