"""The experiment settings object and the one bisection both searches use."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from sparseloom.sim import Experiment, ProfileError, SLOChangeEvent, SweepPoint, at_point
from sparseloom.sim.search import boundary, mean_violation
from sparseloom.workload import Periodic
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def test_boundary_finds_a_turn_from_either_side_and_in_either_direction() -> None:
    tried: list[float] = []

    def below(limit: float):  # passes at or under ``limit``: larger is worse (a load)
        def passes(x: float) -> bool:
            tried.append(x)
            return x <= limit
        return passes

    up = boundary(below(5.0), 1.0, worse=2.0, lowest=1 / 64, highest=64.0, tolerance=0.01)
    assert up.bounded and up.passing is not None and 5.0 / 1.01 <= up.passing <= 5.0
    tried.clear()
    down = boundary(below(0.3), 1.0, worse=2.0, lowest=1 / 64, highest=64.0, tolerance=0.01)
    assert down.bounded and down.passing is not None and 0.3 / 1.01 <= down.passing <= 0.3
    assert tried[:3] == [1.0, 0.5, 0.25]  # a failing start steps the other way
    # Smaller is worse (a memory budget): passes at or above 20.
    budget = boundary(lambda x: x >= 20.0, 160.0, worse=0.5, lowest=160 / 1024, highest=160.0, tolerance=0.01)
    assert budget.bounded and budget.passing is not None and 20.0 <= budget.passing <= 20.0 * 1.01


def test_boundary_stays_within_its_limits_and_says_when_it_hit_one() -> None:
    tried: list[float] = []

    def always(x: float) -> bool:
        tried.append(x)
        return True

    hit = boundary(always, 1.0, worse=2.0, lowest=1 / 64, highest=64.0, tolerance=0.01)
    assert hit == type(hit)(64.0, False) and max(tried) == 64.0
    tried.clear()
    never = boundary(lambda x: tried.append(x) or False, 1.0, worse=2.0, lowest=1 / 64, highest=64.0, tolerance=0.01)
    assert never.passing is None and not never.bounded and min(tried) == 1 / 64
    # The memory search's top misses: there is nothing above it to try.
    top = boundary(lambda x: False, 10.0, worse=0.5, lowest=10 / 1024, highest=10.0, tolerance=0.05)
    assert top.passing is None and not top.bounded
    with pytest.raises(ValueError, match="lowest <= start <= highest"):
        boundary(always, 100.0, worse=2.0, lowest=1.0, highest=64.0, tolerance=0.01)


def test_an_experiment_checks_its_settings_and_keeps_plain_values() -> None:
    with pytest.raises(ValueError, match="warmup_s"):
        Experiment(duration_s=2.0, warmup_s=2.0)
    with pytest.raises(ValueError, match="seeds"):
        Experiment(duration_s=2.0, seeds=0)
    with pytest.raises(ValueError, match="rate_scale"):
        Experiment(duration_s=2.0, rate_scale=0.0)
    change = SLOChangeEvent(100.0, "a", latency_ms=4.0)
    exp = Experiment(duration_s=2.0, seed=3, seeds=2, slo_changes=[change], base_dir=".")  # type: ignore[arg-type]
    assert exp.slo_changes == (change,) and exp.seed_list == (3, 4) and exp.base_dir == "."


def test_a_sweep_point_scales_the_experiment_relative_to_its_own_settings() -> None:
    change = SLOChangeEvent(100.0, "a", latency_ms=4.0)
    exp = Experiment(duration_s=2.0, seed=5, slo_changes=(change,), rate_scale=2.0,
                     profile_error=ProfileError(scale=1.5, block_cv=0.2, seed=9))
    at = at_point(exp, SweepPoint(rate_scale=3.0, slo_scale=0.5, error_scale=2.0))
    assert at.rate_scale == 6.0 and at.slo_changes[0].latency_ms == 2.0
    assert at.profile_error == ProfileError(scale=3.0, block_cv=0.2, seed=9)
    # With no profile error of its own, the point's error starts from the profile, on the experiment's seed.
    plain = at_point(replace(exp, profile_error=None), SweepPoint(error_scale=1.25))
    assert plain.profile_error == ProfileError(scale=1.25, seed=5)


def test_a_search_trial_runs_the_whole_experiment_profile_error_included() -> None:
    # 6 ms of service against an 8 ms SLO: on the profile nothing misses; with the truth at 1.5x
    # the profile (9 ms) every request does. The searches used to drop the profile error.
    task = chain_task("a", [{"cpu": 6.0}], slo_ms=8.0, rate_hz=10.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    spec = {"a": Periodic(process="periodic", period_ms=100.0)}
    exp = Experiment(duration_s=2.0)
    assert mean_violation(problem, policy, spec, exp)[0] == 0.0
    assert mean_violation(problem, policy, spec, replace(exp, profile_error=ProfileError(scale=1.5)))[0] == 1.0
    offered = mean_violation(problem, policy, spec, replace(exp, rate_scale=2.0))[1]
    assert math.isclose(offered, 20.0, rel_tol=0.1)
