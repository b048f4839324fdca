"""The closed loop's table: observed / profile latency per block x processor, and what it corrects."""

from __future__ import annotations

import pytest

from scheduler.feedback import COMPARABLE_SPAN, MIN_SAMPLES, Correction, Feedback
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec


def _problem() -> Problem:
    pos = (Block("a", "da", 1.0, {"cpu": 2.0, "gpu": 1.0}), Block("b", "db", 1.0, {"cpu": 4.0, "gpu": 3.0}))
    task = TaskSpec("t", "m", 10.0, 0.0, 10.0, (pos,), (0.0,))
    return Problem((task,), (ProcessorInfo("cpu", "cpu"), ProcessorInfo("gpu", "gpu")), 100.0)


def test_a_pair_counts_only_once_it_has_enough_executions() -> None:
    fb = Feedback()
    fb.add("da", "cpu", 2.0 * (MIN_SAMPLES - 1), 3.0 * (MIN_SAMPLES - 1), MIN_SAMPLES - 1)
    assert fb.ratios() == {}
    fb.add("da", "cpu", 2.0, 3.0)
    assert fb.ratios() == {("da", "cpu"): pytest.approx(1.5)}


def test_correction_scales_observed_pairs_and_the_rest_of_their_processor() -> None:
    fb = Feedback()
    fb.add("da", "cpu", 2.0 * MIN_SAMPLES, 3.0 * MIN_SAMPLES, MIN_SAMPLES)
    c = Correction.of(fb)
    fixed = c.apply(_problem())
    a, b = fixed.tasks[0].positions[0]
    # The observed pair by its own factor, the unobserved block on the same processor by the
    # median factor of its processor's comparable blocks (4 ms is within COMPARABLE_SPAN of 2 ms), and the processor nothing was observed on left alone.
    assert a.latency_ms == {"cpu": pytest.approx(3.0), "gpu": 1.0}
    assert b.latency_ms == {"cpu": pytest.approx(6.0), "gpu": 3.0}
    assert c.factors(_problem()) == {("da", "cpu"): pytest.approx(1.5), ("db", "cpu"): pytest.approx(1.5)}


def test_worst_error_is_relative_to_what_the_plan_assumed() -> None:
    fb = Feedback()
    fb.add("da", "cpu", 2.0 * MIN_SAMPLES, 2.5 * MIN_SAMPLES, MIN_SAMPLES)
    c = Correction.of(fb)
    assert c.worst_error({}) == pytest.approx(0.25)
    assert c.worst_error({("da", "cpu"): 1.25}) == pytest.approx(0.0)
    # Symmetric in log terms: 20% faster than assumed is the same error as 25% slower.
    assert c.worst_error({("da", "cpu"): 1.5625}) == pytest.approx(0.25)


def _one_block(ms: float) -> Problem:
    task = TaskSpec("t", "m", 10.0, 0.0, 10.0, ((Block("c", "dc", 1.0, {"cpu": ms}),),), (0.0,))
    return Problem((task,), (ProcessorInfo("cpu", "cpu"),), 100.0)


@pytest.mark.parametrize(("ms", "carried"), [
    (2.0 * COMPARABLE_SPAN, True), (2.0 / COMPARABLE_SPAN, True),  # at the span's edges
    (2.0 * COMPARABLE_SPAN * 1.01, False), (2.0 / COMPARABLE_SPAN / 1.01, False),  # just past them
])
def test_a_factor_stands_for_unobserved_blocks_of_comparable_latency_only(ms: float, carried: bool) -> None:
    # "da" (2 ms expected) ran 3x its profile: a per-call cost a short block shows and a long one
    # would not, so it says nothing about blocks far from 2 ms.
    fb = Feedback()
    fb.add("da", "cpu", 2.0 * MIN_SAMPLES, 6.0 * MIN_SAMPLES, MIN_SAMPLES)
    c = Correction.of(fb)
    assert c.factor("dc", "cpu", ms) == pytest.approx(3.0 if carried else 1.0)
    (only,), = c.apply(_one_block(ms)).tasks[0].positions
    assert only.latency_ms["cpu"] == pytest.approx(ms * (3.0 if carried else 1.0))


def test_an_unobserved_block_takes_the_median_of_the_comparable_factors() -> None:
    fb = Feedback()
    for digest, ms, ratio in (("p", 0.1, 3.5), ("q", 2.0, 1.1), ("r", 3.0, 1.3), ("s", 5.0, 1.2)):
        fb.add(digest, "cpu", ms * MIN_SAMPLES, ratio * ms * MIN_SAMPLES, MIN_SAMPLES)
    c = Correction.of(fb)
    # 4 ms: q, r and s are comparable (median 1.2), p's 0.1 ms is not.
    assert c.factor("dc", "cpu", 4.0) == pytest.approx(1.2)
    assert c.factor("dc", "cpu", 0.2) == pytest.approx(3.5)
    assert c.factor("dc", "gpu", 4.0) == 1.0


def test_the_closed_loops_factors_survive_an_slo_switch_and_the_replan_after_it() -> None:
    # The policy learns that block "da" runs 3x its profile on the cpu; an SLO change then switches
    # the plan and re-plans on it. Both keep the factors: a re-plan on the profile would undo what the
    # closed loop learnt.
    from dataclasses import replace

    from scheduler.policies.sparseloom import SparseLoomPolicy, latency_factors

    problem = _problem()
    policy = SparseLoomPolicy()
    fb = Feedback()
    fb.add("da", "cpu", 2.0 * MIN_SAMPLES, 6.0 * MIN_SAMPLES, MIN_SAMPLES)
    corrected = policy.recalibrate(problem, policy.plan(problem), fb)
    assert corrected is not None and latency_factors(corrected)[("da", "cpu")] == pytest.approx(3.0)
    looser = replace(problem, tasks=(replace(problem.tasks[0], latency_slo_ms=20.0),))
    switched = policy.switch(corrected, looser)
    assert switched is not None and latency_factors(switched) == latency_factors(corrected)
    assert latency_factors(policy.replan(looser, switched)) == latency_factors(corrected)
    assert latency_factors(policy.plan(problem)) == {}
