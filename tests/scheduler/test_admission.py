"""Cost-aware admission: the live-rate estimate along the axis its window trades, the shed rule, and
its effect in the simulator and the runtime's decision."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler import admission
from scheduler.admission import RATE_WINDOW, Admission
from scheduler.plan import Plan, Route, SolveInfo
from sparseloom.sim import Arrivals, simulate
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of

CHEAP_SLO, CHEAP_MS, HEAVY_MS = 2.0, 0.5, 20.0


def _problem():  # type: ignore[no-untyped-def]
    return problem_of([chain_task("cheap", [{"cpu": CHEAP_MS}], slo_ms=CHEAP_SLO),
                       chain_task("heavy", [{"cpu": HEAVY_MS}], slo_ms=100.0)], memory_budget_mb=10)


def _plan() -> Plan:
    routes = {"cheap": Route("cheap", (0,), ("cpu",), CHEAP_MS, None, 1.0, step_latency_ms=(CHEAP_MS,)),
              "heavy": Route("heavy", (0,), ("cpu",), HEAVY_MS, None, 1.0, step_latency_ms=(HEAVY_MS,))}
    return Plan(routes, SolveInfo("fixed", "ok", 0.0), slo_ms={"cheap": CHEAP_SLO, "heavy": 100.0})


def _feed(a: Admission, task: str, period_ms: float, n: int, start: float = 0.0) -> float:
    t = start
    for _ in range(n):
        a.arrive(task, t)
        t += period_ms
    return t - period_ms


def test_the_heavy_request_is_shed_only_while_cheap_requests_arrive_fast_enough_to_lose_more_than_one() -> None:
    plan = _plan()
    slack = CHEAP_SLO - CHEAP_MS
    # Break-even: one cheap request lost behind the heavy block, at rate 1 / (HEAVY_MS - slack) per ms.
    even_period = HEAVY_MS - slack
    for period, admitted in ((0.5 * even_period, False), (2.0 * even_period, True)):
        a = Admission(_problem())
        now = _feed(a, "cheap", period, 40)
        heavy = plan.routes["heavy"]
        assert a.harm(heavy, plan, now) == pytest.approx((HEAVY_MS - slack) / period, rel=1e-9)
        assert a.admit(heavy, plan, now) is admitted
        # The cheapest task is never shed, however fast anything arrives.
        _feed(a, "heavy", 0.1, 40, start=now)
        assert a.admit(plan.routes["cheap"], plan, now + 4.0)


def test_two_tasks_of_equal_cost_never_shed_each_other() -> None:
    problem = problem_of([chain_task("a", [{"cpu": 10.0}], slo_ms=12.0), chain_task("b", [{"cpu": 10.0}], slo_ms=12.0)],
                         memory_budget_mb=10)
    routes = {t: Route(t, (0,), ("cpu",), 10.0, None, 1.0, step_latency_ms=(10.0,)) for t in ("a", "b")}
    plan = Plan(routes, SolveInfo("fixed", "ok", 0.0), slo_ms={"a": 12.0, "b": 12.0})
    a = Admission(problem)
    now = max(_feed(a, "a", 0.5, 40), _feed(a, "b", 0.5, 40))
    assert a.harm(routes["a"], plan, now) == 0.0 and a.admit(routes["b"], plan, now)


def test_a_silent_task_stops_counting() -> None:
    a = Admission(_problem())
    last = _feed(a, "cheap", 1.0, 40)
    fast = a.rate_per_ms("cheap", last)
    assert fast == pytest.approx(1.0)
    # RATE_WINDOW - 1 intervals spread over ever more time as nothing arrives.
    assert a.rate_per_ms("cheap", last + 100 * RATE_WINDOW) < 0.01 * fast


def _spread_and_lag(window: int) -> tuple[float, int]:
    rng = np.random.default_rng(7)
    # Noise: the estimate's spread around the true rate on Poisson arrivals at 0.1 per ms.
    a = Admission(_problem())
    t, est = 0.0, []
    for i in range(6000):
        t += float(rng.exponential(10.0))
        a.arrive("cheap", t)
        if i > window:
            est.append(a.rate_per_ms("cheap", t))
    q1, q3 = np.percentile(est, [25, 75])
    # Lag: arrivals after a step from 0.02 to 0.4 per ms until the estimate sees 3/4 of the new rate.
    b = Admission(_problem())
    now = _feed(b, "cheap", 50.0, 2 * window)
    n = 0
    while b.rate_per_ms("cheap", now) < 0.75 * 0.4:
        now += 2.5
        b.arrive("cheap", now)
        n += 1
    return float((q3 - q1) / 0.1), n


def test_the_rate_window_trades_noise_for_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    got = {}
    for window in (4, RATE_WINDOW, 64):
        monkeypatch.setattr(admission, "RATE_WINDOW", window)
        got[window] = _spread_and_lag(window)
    spreads = [got[w][0] for w in sorted(got)]
    lags = [got[w][1] for w in sorted(got)]
    assert spreads[0] > spreads[1] > spreads[2]  # a longer window is steadier...
    # ...and follows a step only once it has (nearly) filled with the new arrivals.
    assert all(w - 2 <= lag <= w - 1 for w, lag in zip(sorted(got), lags))
    # The default: an interquartile range of about a third of the rate (1.35 / sqrt(window - 3)).
    assert got[RATE_WINDOW][0] == pytest.approx(1.35 / np.sqrt(RATE_WINDOW - 3), rel=0.25)


def _arrivals(cheap_period: float) -> Arrivals:
    return Arrivals(0, 1.0, {"cheap": np.arange(0.0, 1000.0, cheap_period),
                             "heavy": np.arange(3.0, 1000.0, 25.0)})


@pytest.mark.parametrize("cheap_period", [1.0, 200.0])
def test_in_the_simulator_shedding_trades_one_heavy_request_for_the_cheap_ones_it_would_block(
        cheap_period: float) -> None:
    policy = FixedPolicy("fixed", {"cheap": ((0,), ("cpu",)), "heavy": ((0,), ("cpu",))})
    policy.drop_late = True
    off = simulate(_problem(), policy, _arrivals(cheap_period))
    policy.admission = True
    on = simulate(_problem(), policy, _arrivals(cheap_period))
    assert off.shed_rate == 0.0
    if cheap_period == 1.0:
        # 1 cheap request/ms: each heavy block would make ~18 of them miss; every heavy one is shed.
        heavy_share = 40 / (1000 + 40)
        assert on.shed_rate == pytest.approx(heavy_share, abs=1 / 1040)
        assert on.per_task["cheap"].slo_violation_rate == 0.0
        assert on.slo_violation_rate < 0.1 * off.slo_violation_rate
    else:
        # 5 cheap requests/s: a heavy block costs 0.09 of one; nothing is shed and nothing changes.
        assert on.shed_rate == 0.0 and on.slo_violation_rate == off.slo_violation_rate
