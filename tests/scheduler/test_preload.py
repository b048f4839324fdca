"""Pre-loaders never exceed their budget and rank as documented."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from scheduler.preload import (
    PRELOADERS,
    correlated_blocks,
    hot_blocks,
    next_task_probability,
    preloader,
)
from scheduler.routes import digest_memory, pareto_routes
from scheduler.synthetic import random_problem


@pytest.mark.parametrize("name", sorted(PRELOADERS))
def test_preloader_stays_within_budget(name: str) -> None:
    rng = random.Random(3)
    for seed in range(15):
        problem = random_problem(seed, tasks=4, positions=3, variants=4, processors=3)
        cands = {t.name: pareto_routes(problem, t) for t in problem.tasks}
        mem = digest_memory(problem)
        resident = frozenset(rng.sample(sorted(mem), 2))
        budget = rng.uniform(0.0, sum(mem.values()))
        current = rng.choice([None, problem.tasks[0].name])
        order = preloader(name)(problem, cands, budget, resident, current)
        assert sum(mem[d] for d in order) <= budget + 1e-9
        assert len(set(order)) == len(order)
        assert not set(order) & resident
        if budget >= sum(mem.values()):
            assert (
                set(order)
                == {d for rs in cands.values() for r in rs for d in r.digests}
                - resident
            )


def test_correlated_preload_loads_the_likely_next_task_first() -> None:
    problem = random_problem(1, tasks=4, positions=2, variants=2, processors=2)
    names = [t.name for t in problem.tasks]
    # After task0 comes task3 almost always.
    trans = {names[0]: {names[3]: 9.0, names[1]: 1.0}}
    problem = replace(problem, transitions=trans)
    assert next_task_probability(problem, names[0])[names[3]] == pytest.approx(0.9)
    cands = {t.name: pareto_routes(problem, t)[:1] for t in problem.tasks}
    order = correlated_blocks(problem, cands, 1e9, frozenset(), names[0])
    first = set(cands[names[3]][0].digests)
    assert set(order[: len(first)]) == first


def test_hot_preload_prefers_blocks_used_by_many_candidates() -> None:
    problem = random_problem(
        2, tasks=2, positions=2, variants=3, processors=2, memory_tightness=5
    )
    cands = {t.name: pareto_routes(problem, t) for t in problem.tasks}
    mem = digest_memory(problem)
    order = hot_blocks(problem, cands, 1e9, frozenset())
    count = {d: sum(d in r.digests for rs in cands.values() for r in rs) for d in order}
    # Uniqueness and task share also weigh, but the top block is among the most used.
    assert count[order[0]] >= sorted(count.values())[len(count) // 2]
    assert sum(mem[d] for d in order) <= 1e9


def test_a_place_dispatch_preloads_only_alternatives_faster_than_the_plan() -> None:
    from scheduler.policies.sparseloom import SparseLoomPolicy
    from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec

    # "a" fills the CPU, so "b" is planned on its GPU variant; its CPU variant is faster but over the
    # cap, its third variant slower and more accurate.
    a = TaskSpec("a", "ma", 10.0, 0.0, 500.0, ((Block("fast", "a0", 1.0, {"cpu": 1.0}),),), (0.0,))
    b = TaskSpec("b", "mb", 10.0, 0.8, 500.0, ((Block("fast", "b0", 1.0, {"cpu": 1.0}, -0.05),
                                               Block("other", "b1", 1.0, {"gpu": 1.5}, -0.02),
                                               Block("slow", "b2", 1.0, {"gpu": 2.0}, 0.0)),), (0.0,),
                 base_accuracy=0.9)
    problem = Problem((a, b), (ProcessorInfo("cpu", "cpu"), ProcessorInfo("gpu", "gpu")), 100.0)
    place = SparseLoomPolicy(dispatch="place").plan(problem)
    accuracy = SparseLoomPolicy(dispatch="accuracy").plan(problem)
    assert place.routes["b"].variants == accuracy.routes["b"].variants == ("other",)
    assert place.preload == ("b0",)
    assert set(accuracy.preload) == {"b0", "b2"}
