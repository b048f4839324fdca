"""Transition graph frequencies and the pre-loader's budget promise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stitching.multitask.preload import TransitionGraph, fill_budget, plan_preload


def test_transition_graph_counts_and_smoothing() -> None:
    g = TransitionGraph(["a", "b", "c"], alpha=0.0)
    g.observe_sequence(["a", "b", "a", "b", "a", "c", "a", "a"])
    assert g.counts[("a", "b")] == 2 and g.counts[("a", "c")] == 1
    assert ("a", "a") not in g.counts  # staying is not a switch
    assert g.next_probabilities("a") == pytest.approx({"b": 2 / 3, "c": 1 / 3})
    smooth = TransitionGraph(["a", "b", "c"], alpha=1.0)
    assert smooth.next_probabilities("c") == pytest.approx({"a": 0.5, "b": 0.5})


def test_graph_from_counts_uses_the_row_then_the_inflow() -> None:
    g = TransitionGraph.from_counts({"a": {"b": 3.0, "c": 1.0}, "b": {"a": 0.0}})
    assert g.next_probabilities("a") == pytest.approx({"b": 0.75, "c": 0.25})
    assert g.next_probabilities("c") == pytest.approx({"b": 1.0})  # no row: the in-flow, c itself left out
    assert g.next_probabilities(None) == pytest.approx({"b": 0.75, "c": 0.25})
    assert TransitionGraph.from_counts({}).next_probabilities("a") == {}


def test_fill_budget_takes_value_then_smaller_and_skips_held() -> None:
    plan = fill_budget({"x": 2.0, "y": 1.0, "z": 1.0, "h": 5.0}, {"x": 6.0, "y": 3.0, "z": 2.0, "h": 1.0}, 8.5, held={"h"})
    assert plan.order == ("x", "z")  # y (3.0) no longer fits after x and z
    assert plan.used == 8.0 and plan.expected_saved == pytest.approx(2.0 * 6 + 1.0 * 2)


def test_greedy_prefers_the_likely_next_task() -> None:
    tasks = {"a": {"x"}, "b": {"x", "b1", "b2"}, "c": {"c1", "c2"}}
    sizes = {"x": 10, "b1": 10, "b2": 10, "c1": 10, "c2": 10}
    plan = plan_preload("a", {"b": 0.8, "c": 0.2}, tasks, sizes, budget_bytes=25)
    assert plan.digests == {"b1", "b2"}  # x is already held; c's tiles would not fit as well
    assert plan.used == 20


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=40),
    membership=st.lists(st.lists(st.booleans(), min_size=40, max_size=40), min_size=3, max_size=3),
    weights=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    budget=st.integers(0, 60000),
)
def test_preloader_never_exceeds_its_budget(
    sizes: list[int], membership: list[list[bool]], weights: list[float], budget: int
) -> None:
    digests = [f"d{i}" for i in range(len(sizes))]
    nbytes = dict(zip(digests, sizes, strict=True))
    tasks = {t: {d for d, m in zip(digests, membership[i], strict=False) if m} for i, t in enumerate("abc")}
    plan = plan_preload("a", {"b": weights[0], "c": weights[1]}, tasks, nbytes, budget)
    assert plan.used == sum(nbytes[d] for d in plan.digests) <= budget
    assert not plan.digests & tasks["a"]
    assert plan.digests <= (tasks["b"] | tasks["c"])
    # Greedy is maximal: anything useful that is left out would not have fitted.
    useful = {d for t, p in (("b", weights[0]), ("c", weights[1])) if p > 0 for d in tasks[t]} - tasks["a"]
    for d in useful - plan.digests:
        assert plan.used + nbytes[d] > budget
