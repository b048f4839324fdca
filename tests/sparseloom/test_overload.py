"""Overload limits at arrival (sparseloom.core.overload), one rule for the simulator and the runtime."""

from __future__ import annotations

import numpy as np
import pytest

from sparseloom.core.overload import Overload, expected_finish_ms
from sparseloom.sim import Arrivals, simulate
from sparseloom.sim.experiment import Experiment
from sparseloom.sim.runner import simulate_in
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


class Backlog:
    """A queue view with a fixed backlog per processor."""

    def __init__(self, **ms: float) -> None:
        self.ms = ms

    def now_ms(self) -> float:
        return 0.0

    def backlog_ms(self, processor: str) -> float:
        return self.ms.get(processor, 0.0)

    def is_resident(self, digest: str) -> bool:
        return True

    @property
    def memo(self) -> dict[str, object]:
        return {}


def test_expected_finish_waits_for_each_processors_backlog_then_its_predecessor() -> None:
    view = Backlog(cpu=4.0, gpu=1.0)
    # cpu block: waits 4, runs 2 (t=6); gpu block: its 1 ms backlog is clear by then, runs 3 (t=9).
    assert expected_finish_ms([("cpu", 2.0), ("gpu", 3.0)], view) == pytest.approx(9.0)
    assert expected_finish_ms([("gpu", 3.0), ("cpu", 2.0)], view) == pytest.approx(6.0)


def test_refusal_names_the_limit_in_order() -> None:
    view = Backlog(cpu=30.0)
    limits = Overload(max_in_flight=2, shed_factor=2.0)
    assert "2 requests in flight (limit 2)" in (limits.refusal(2, True, 10.0, [("cpu", 1.0)], view) or "")
    assert (limits.refusal(0, False, 10.0, [("cpu", 1.0)], view) or "").startswith("shed")
    assert "over 2 x SLO" in (limits.refusal(0, True, 10.0, [("cpu", 1.0)], view) or "")
    assert limits.refusal(0, True, 20.0, [("cpu", 1.0)], view) is None
    assert Overload(None, None).refusal(10**6, True, 1.0, [("cpu", 1.0)], view) is None
    with pytest.raises(ValueError, match="max_in_flight"):
        Overload(max_in_flight=0)
    with pytest.raises(ValueError, match="shed_factor"):
        Overload(shed_factor=0.0)


def _burst() -> tuple[object, FixedPolicy, Arrivals]:
    task = chain_task("a", [{"cpu": 10.0}], memory_mb=1.0, slo_ms=1000.0)
    problem = problem_of([task], memory_budget_mb=100.0, storage_mb_per_ms=1e6)
    # Five requests 1 ms apart, each 10 ms of work on one processor.
    return problem, FixedPolicy("fixed", {"a": ((0,), ("cpu",))}), Arrivals(0, 1.0, {"a": np.arange(100.0, 105.0)})


def test_simulator_refuses_beyond_the_in_flight_limit_as_the_runtime_does() -> None:
    problem, policy, arrivals = _burst()
    free = simulate(problem, policy, arrivals)
    assert np.isfinite(free.latencies_ms["a"]).sum() == 5
    capped = simulate(problem, policy, arrivals, overload=Overload(max_in_flight=2))
    lat = capped.latencies_ms["a"]
    # The first two are in flight when the next three arrive (the first ends at 110): refused.
    assert list(np.isfinite(lat)) == [True, True, False, False, False]
    # A looser limit refuses fewer: the axis the limit trades (violations now against queueing).
    looser = simulate(problem, policy, arrivals, overload=Overload(max_in_flight=4))
    assert np.isfinite(looser.latencies_ms["a"]).sum() == 4
    assert capped.slo_violation_rate > looser.slo_violation_rate > free.slo_violation_rate


def test_simulator_sheds_a_request_expected_to_finish_past_its_factor_of_the_slo() -> None:
    problem, policy, arrivals = _burst()
    # SLO 1000 ms, factor 0.025: an expected finish over 25 ms is refused. Request 0 expects 10 ms;
    # request 1 (at 101) waits 9 then runs 10: 19; request 2 (at 102) waits 8 + 10 queued: 28, refused;
    # so are 3 (27) and 4 (26), the refused ones adding no backlog. A factor of 0.03 admits request 2.
    res = simulate_in(Experiment(duration_s=1.0, overload=Overload(None, 0.025)), problem, policy, arrivals)
    assert list(np.isfinite(res.latencies_ms["a"])) == [True, True, False, False, False]
    looser = simulate_in(Experiment(duration_s=1.0, overload=Overload(None, 0.03)), problem, policy, arrivals)
    assert list(np.isfinite(looser.latencies_ms["a"])) == [True, True, True, False, False]
