"""Per-processor queues are served in the order the policy declares, in the simulator and the runtime."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sparseloom.core.dispatch import queue_key
from sparseloom.runtime.workers import Worker
from sparseloom.sim import Arrivals, simulate
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def _two_tasks() -> tuple[FixedPolicy, Arrivals]:
    # "slow" (SLO 100 ms) occupies the CPU from t=0 for 10 ms; a second "slow" request joins its queue
    # at t=1, then an "urgent" one (SLO 20 ms) at t=2. EDF runs "urgent" next; FIFO runs "slow" first
    # and the urgent request finishes at 30 ms, past its SLO.
    policy = FixedPolicy("fixed", {"slow": ((0,), ("cpu",)), "urgent": ((0,), ("cpu",))})
    arrivals = Arrivals(0, 1.0, {"slow": np.asarray([0.0, 1.0]), "urgent": np.asarray([2.0])})
    return policy, arrivals


def _problem():  # type: ignore[no-untyped-def]
    return problem_of([chain_task("slow", [{"cpu": 10.0}], slo_ms=100.0),
                       chain_task("urgent", [{"cpu": 10.0}], slo_ms=20.0)], memory_budget_mb=10)


@pytest.mark.parametrize(("order", "urgent_ms", "slow_ms"), [("deadline", 18.0, [10.0, 29.0]),
                                                            ("fifo", 28.0, [10.0, 19.0])])
def test_simulator_serves_each_processor_queue_in_the_declared_order(
        order: str, urgent_ms: float, slow_ms: list[float]) -> None:
    policy, arrivals = _two_tasks()
    policy.order = order  # type: ignore[assignment]
    res = simulate(_problem(), policy, arrivals)
    np.testing.assert_allclose(res.latencies_ms["urgent"], [urgent_ms])
    np.testing.assert_allclose(res.latencies_ms["slow"], slow_ms)
    assert res.slo_violation_rate == (0.0 if order == "deadline" else pytest.approx(1 / 3))


def test_an_unknown_order_is_refused_by_name() -> None:
    policy, arrivals = _two_tasks()
    policy.order = "lifo"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="order='lifo'.*deadline, fifo"):
        simulate(_problem(), policy, arrivals)


@pytest.mark.parametrize(("by_deadline", "expected"), [(True, ["b", "c", "a"]), (False, ["a", "b", "c"])])
def test_runtime_worker_serves_its_queue_in_the_declared_order(by_deadline: bool, expected: list[str]) -> None:
    ran: list[str] = []
    done = threading.Event()

    def execute(worker: Worker[str], job: str) -> None:
        ran.append(job)
        if len(ran) == 3:
            done.set()

    w: Worker[str] = Worker("cpu", 0, execute)
    # Queued before the thread starts, so the order is the queue's alone.
    for joined, (job, deadline) in enumerate((("a", 30.0), ("b", 10.0), ("c", 20.0))):
        w.put(job, 1.0, queue_key(by_deadline, deadline, joined, joined))
    assert w.queued_ms == 3.0
    w.start()
    assert done.wait(5.0)
    w.stop()
    w.join(5.0)
    assert ran == expected


@pytest.mark.parametrize("drop", [True, False])
def test_a_request_that_cannot_finish_in_time_is_dropped_before_it_takes_the_processor(drop: bool) -> None:
    # "urgent" (SLO 15 ms, a 10 ms block) arrives at t=1 behind a 10 ms block: at t=10 it could end at
    # 20 > 16 at best. Dropped, it leaves the CPU to the second "slow" request, which then ends at 20.
    problem = problem_of([chain_task("slow", [{"cpu": 10.0}], slo_ms=100.0),
                          chain_task("urgent", [{"cpu": 10.0}], slo_ms=15.0)], memory_budget_mb=10)
    policy = FixedPolicy("fixed", {"slow": ((0,), ("cpu",)), "urgent": ((0,), ("cpu",))})
    policy.drop_late = drop
    arrivals = Arrivals(0, 1.0, {"slow": np.asarray([0.0, 2.0]), "urgent": np.asarray([1.0])})
    res = simulate(problem, policy, arrivals)
    assert res.slo_violation_rate == pytest.approx(1 / 3)
    if drop:
        assert res.per_task["urgent"].completed == 0
        np.testing.assert_allclose(res.latencies_ms["slow"], [10.0, 18.0])
    else:
        np.testing.assert_allclose(res.latencies_ms["urgent"], [19.0])
        np.testing.assert_allclose(res.latencies_ms["slow"], [10.0, 28.0])


def test_equal_deadlines_are_served_in_arrival_order_whatever_order_they_joined() -> None:
    # Two requests with one deadline: the later arrival's block joined first (its predecessor ran
    # on another processor). Both drivers serve the earlier arrival first.
    assert queue_key(True, 20.0, 3, 7) < queue_key(True, 20.0, 5, 6)
    assert queue_key(False, 20.0, 5, 6) < queue_key(False, 10.0, 3, 7)
