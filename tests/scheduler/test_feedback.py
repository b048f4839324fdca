"""The closed loop's table: observed / profile latency per block x processor, and what it corrects."""

from __future__ import annotations

import pytest

from scheduler.feedback import MIN_SAMPLES, Correction, Feedback
from scheduler.problem import Option, Problem, ProcessorInfo, TaskSpec


def _problem() -> Problem:
    pos = (Option("a", "da", 1.0, {"cpu": 2.0, "gpu": 1.0}), Option("b", "db", 1.0, {"cpu": 4.0, "gpu": 3.0}))
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
    # processor's median factor, and the processor nothing was observed on left alone.
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
