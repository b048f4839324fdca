"""The fastest-accurate-variant bound: exact against enumeration, and never above what a plan reaches."""

from __future__ import annotations

import itertools
import math

import pytest

from scheduler.bounds import fastest_accurate_ms
from scheduler.problem import Block, TaskSpec
from scheduler.synthetic import random_problem


def _enumerated(task: TaskSpec) -> float | None:
    """The least summed fastest-processor latency over every accurate variant, by enumeration."""
    best = math.inf
    for choice in itertools.product(*(range(len(p)) for p in task.positions)):
        accuracy = task.accuracy(choice)
        estimate = task.estimated_accuracy(choice)
        ok = (accuracy is None or accuracy >= task.min_accuracy - 1e-12
              or (estimate is not None and estimate >= task.min_accuracy - 1e-12))
        if ok:
            best = min(best, sum(min(task.positions[p][o].latency_ms.values()) for p, o in enumerate(choice)))
    return None if math.isinf(best) else best


@pytest.mark.parametrize("seed", range(12))
def test_bound_equals_enumeration_on_random_tasks(seed: int) -> None:
    problem = random_problem(seed, tasks=3, positions=3, variants=4, processors=3)
    for task in problem.tasks:
        got, want = fastest_accurate_ms(task), _enumerated(task)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want)


def _task(min_accuracy: float, measured: dict[tuple[int, ...], float] | None = None) -> TaskSpec:
    # Two positions; the fast option loses 3 accuracy points, the slow one none.
    pos = (Block("dense", "d0", 1.0, {"cpu": 5.0, "gpu": 4.0}),
           Block("pruned", "p0", 1.0, {"cpu": 1.0}, accuracy_delta=-0.03))
    pos2 = (Block("dense", "d1", 1.0, {"gpu": 6.0}),
            Block("pruned", "p1", 1.0, {"cpu": 2.0, "gpu": 3.0}, accuracy_delta=-0.03))
    return TaskSpec("t", "m", 10.0, min_accuracy, 1.0, (pos, pos2), (0.0, 0.0), base_accuracy=0.95,
                    measured_accuracy=measured or {})


def test_the_accuracy_slo_decides_which_blocks_count() -> None:
    assert fastest_accurate_ms(_task(0.80)) == pytest.approx(3.0)   # both pruned: 1 + 2
    assert fastest_accurate_ms(_task(0.92)) == pytest.approx(6.0)   # one pruned: dense 4 + pruned 2 beats 1 + 6
    assert fastest_accurate_ms(_task(0.95)) == pytest.approx(10.0)  # dense only: 4 + 6
    assert fastest_accurate_ms(_task(0.99)) is None


def test_a_measured_variant_that_meets_the_slo_counts_even_against_its_estimate() -> None:
    assert fastest_accurate_ms(_task(0.95, {(1, 1): 0.96})) == pytest.approx(3.0)
