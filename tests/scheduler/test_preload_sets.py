"""The correlation-aware pre-loader over given task block sets: likely tasks first, never over budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.preload import plan_preload


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
