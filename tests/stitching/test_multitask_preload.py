"""Transition graph frequencies and the budgeted greedy fill."""

from __future__ import annotations

import pytest

from stitching.multitask.preload import TransitionGraph, fill_budget


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
