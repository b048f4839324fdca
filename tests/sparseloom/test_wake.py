"""The runtime's first-block cost by idle gap and warmth (sparseloom.sim.wake) and how the simulator charges it."""

from __future__ import annotations

import numpy as np
import pytest

from sparseloom.sim import Arrivals, simulate
from sparseloom.sim.experiment import Experiment
from sparseloom.sim.runner import simulate_in
from sparseloom.sim.wake import LEVELS, Wake, WakeCurve
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def flat(ms: float) -> tuple[float, ...]:
    return tuple(ms for _ in LEVELS)


def test_curve_is_linear_between_gaps_flat_beyond_and_spans_its_quantiles() -> None:
    curve = WakeCurve.measured({0.0: [0.0, 0.1, 0.2], 10.0: [1.0, 1.1, 1.2]})
    assert curve.gaps_ms == (0.0, 10.0)
    assert curve.cost(0.0) == pytest.approx(0.1) and curve.cost(10.0) == pytest.approx(1.1)
    assert curve.cost(5.0) == pytest.approx(0.6) and curve.cost(2.5) == pytest.approx(0.35)
    assert curve.cost(50.0) == pytest.approx(1.1) and curve.cost(-1.0) == pytest.approx(0.1)
    # The draw's level spans the measured samples: lowest at 0, highest at 1, linear in between.
    assert curve.cost(10.0, 0.0) == pytest.approx(1.0) and curve.cost(10.0, 1.0) == pytest.approx(1.2)
    assert curve.cost(5.0, 0.25) == pytest.approx(0.55)
    assert curve.median_ms() == {0.0: pytest.approx(0.1), 10.0: pytest.approx(1.1)}


def test_a_rare_outlier_is_drawn_about_as_often_as_it_was_measured() -> None:
    # 700 probe requests near 0.1 ms and one preempted for 7 ms: the draw's mean and its share above
    # 1 ms stay near the samples' own (0.14%; under 0.5%), where even 5% levels drew it for ~5% of requests.
    rng = np.random.default_rng(1)
    samples = np.append(rng.uniform(0.05, 0.15, 700), 7.0)
    curve = WakeCurve.measured({0.0: samples.tolist()})
    drawn = np.asarray([curve.cost(0.0, u) for u in rng.random(200_000)])
    assert drawn.mean() == pytest.approx(samples.mean(), abs=0.01)
    assert (drawn > 1.0).mean() < 0.005 and drawn.max() > 3.0
    assert np.quantile(drawn, 0.99) == pytest.approx(np.quantile(samples, 0.99), abs=0.02)


def test_curve_rejects_what_is_not_a_curve() -> None:
    with pytest.raises(ValueError, match="increasing"):
        WakeCurve((2.0, 1.0), (flat(0.0), flat(0.0)))
    with pytest.raises(ValueError, match="one row of costs per gap"):
        WakeCurve((0.0, 1.0), (flat(0.0),))
    with pytest.raises(ValueError, match="non-decreasing"):
        WakeCurve((0.0,), (tuple(reversed([float(i) for i in range(len(LEVELS))])),))
    with pytest.raises(ValueError, match="samples"):
        WakeCurve.measured({1.0: []})
    with pytest.raises(ValueError, match="warm or a cold"):
        Wake(None, None)


def test_wake_picks_warm_or_cold_and_falls_back_to_the_one_it_has() -> None:
    warm, cold = WakeCurve((0.0,), (flat(0.1),)), WakeCurve((0.0,), (flat(0.9),))
    assert Wake(warm, cold).curve(True) is warm and Wake(warm, cold).curve(False) is cold
    assert Wake(warm).curve(False) is warm and Wake(None, cold).curve(True) is cold


def _one_task() -> tuple[object, FixedPolicy]:
    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=1.0)
    problem = problem_of([task], memory_budget_mb=100.0, storage_mb_per_ms=1e6)
    return problem, FixedPolicy("fixed", {"a": ((0, 0), ("cpu", "cpu"))})


def test_first_block_is_charged_by_the_processors_real_idle_gap() -> None:
    problem, policy = _one_task()
    # Costs 0 ms back to back and 1 ms after 10 ms idle or more (the same at every level).
    wake = Wake(WakeCurve((0.0, 10.0), (flat(0.0), flat(1.0))))
    # Request 0 at 100 ms (idle since 0: flat beyond 10 ms); request 1 arrives while 0 runs (queued:
    # gap 0); request 2 comes 5 ms after request 1 finishes (half way up the curve).
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([100.0, 101.0, 117.0])})
    res = simulate(problem, policy, arrivals, wake=(wake,))
    assert res.latencies_ms["a"][0] == pytest.approx(1.0 + 5.0)
    # Request 1 starts at 106 (request 0 ends there), runs 5 ms: done at 111, 10 ms after arriving.
    assert res.latencies_ms["a"][1] == pytest.approx(10.0)
    # Request 2: idle 111 -> 117 = 6 ms, cost 0.6 ms.
    assert res.latencies_ms["a"][2] == pytest.approx(0.6 + 5.0)
    # Without a curve the profile alone is charged.
    plain = simulate(problem, policy, arrivals)
    assert [plain.latencies_ms["a"][i] for i in range(3)] == pytest.approx([5.0, 9.0, 5.0])


def test_start_cost_falls_before_the_first_blocks_late_check_and_finish_cost_after_the_last() -> None:
    from dataclasses import dataclass

    @dataclass
    class Dropping(FixedPolicy):
        drop_late: bool = True

    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=1.0, slo_ms=6.0)
    problem = problem_of([task], memory_budget_mb=100.0, storage_mb_per_ms=1e6)
    policy = Dropping("fixed", {"a": ((0, 0), ("cpu", "cpu"))})
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([100.0])})
    # 1.5 ms at the start, before the first block's check (the runtime's worker picks a request up,
    # then checks it): 1.5 + 5 ms left is past the 6 ms deadline, so no block runs at all.
    start = simulate(problem, policy, arrivals, wake=(Wake(WakeCurve((0.0,), (flat(1.5),))),))
    assert start.completed == 0 and start.utilisation["cpu"] == 0.0
    # 0.9 ms passes that check (5.9 ms) and the second block's (2.9 + 3 ms): the request ends at 5.9 ms.
    tight = simulate(problem, policy, arrivals, wake=(Wake(WakeCurve((0.0,), (flat(0.9),))),))
    assert tight.completed == 1 and tight.latencies_ms["a"][0] == pytest.approx(5.9)
    # The same 1.5 ms at the finish: block 2 starts at 2 ms (in time) and the request ends at 6.5 ms.
    finish = Wake(WakeCurve((0.0,), (flat(0.0),)), finish=WakeCurve((0.0,), (flat(1.5),)))
    late = simulate(problem, policy, arrivals, wake=(finish,))
    assert late.completed == 1 and late.latencies_ms["a"][0] == pytest.approx(6.5)
    # A one-block request pays both on its one block.
    one = chain_task("a", [{"cpu": 2.0}], memory_mb=1.0)
    both = Wake(WakeCurve((0.0,), (flat(0.5),)), finish=WakeCurve((0.0,), (flat(1.5),)))
    single = simulate(problem_of([one], memory_budget_mb=100.0, storage_mb_per_ms=1e6),
                      FixedPolicy("fixed", {"a": ((0,), ("cpu",))}), arrivals, wake=(both,))
    assert single.latencies_ms["a"][0] == pytest.approx(4.0)


def test_cold_curve_serves_after_another_tasks_block_and_cost_never_makes_latency_negative() -> None:
    a = chain_task("a", [{"cpu": 2.0}], memory_mb=1.0)
    b = chain_task("b", [{"cpu": 1.0}], memory_mb=1.0)
    problem = problem_of([a, b], memory_budget_mb=100.0, storage_mb_per_ms=1e6)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",)), "b": ((0,), ("cpu",))})
    wake_a = Wake(WakeCurve((0.0,), (flat(0.5),)), WakeCurve((0.0,), (flat(2.0),)))
    wake_b = Wake(WakeCurve((0.0,), (flat(-5.0),)))  # the profile overestimates b by more than its latency
    # a at 100 (nothing ran before: cold), a at 200 (after a: warm), b at 300, a at 400 (after b: cold).
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([100.0, 200.0, 400.0]), "b": np.asarray([300.0])})
    res = simulate(problem, policy, arrivals, wake=(wake_a, wake_b))
    assert [res.latencies_ms["a"][i] for i in range(3)] == pytest.approx([4.0, 2.5, 4.0])
    assert res.latencies_ms["b"][0] == pytest.approx(0.0, abs=1e-5)  # (a 1e-6 ms load)


def test_spread_is_drawn_from_the_seed_and_the_median_level_is_the_median_curve() -> None:
    problem, policy = _one_task()
    spread = Wake(WakeCurve((0.0,), (tuple(2.0 * u for u in LEVELS),)))
    arrivals = Arrivals(0, 10.0, {"a": np.arange(0.0, 10_000.0, 50.0)})
    one = simulate(problem, policy, arrivals, wake=(spread,)).latencies_ms["a"]
    again = simulate(problem, policy, arrivals, wake=(spread,)).latencies_ms["a"]
    assert np.array_equal(one, again)
    # Costs drawn uniformly over [0, 2] ms: the latencies spread over [5, 7] with median near 6.
    assert one.min() >= 5.0 - 1e-9 and one.max() <= 7.0 + 1e-9 and np.median(one) == pytest.approx(6.0, abs=0.15)


def test_experiment_carries_wake_curves_by_task_name() -> None:
    problem, policy = _one_task()
    wake = Wake(WakeCurve((0.0,), (flat(1.0),)))
    at = Experiment(duration_s=1.0, wake={"a": wake})
    assert at.wake == (("a", wake),) and at.wake_curves(problem) == (wake,)
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([100.0])})
    assert simulate_in(at, problem, policy, arrivals).latencies_ms["a"][0] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="not in the problem: b"):
        Experiment(duration_s=1.0, wake={"b": wake}).wake_curves(problem)


def test_feedback_sees_block_run_times_without_the_wake_cost() -> None:
    from scheduler.feedback import Feedback
    from sparseloom.sim import engine

    problem, policy = _one_task()
    seen: list[Feedback] = []

    class Watching(FixedPolicy):
        closed_loop = True

        def recalibrate(self, problem, plan, feedback):  # type: ignore[no-untyped-def]
            seen.append(feedback)
            return None

    watch = Watching("fixed", policy.routes)
    times = np.arange(0.0, 3_000.0, 20.0)
    wake = Wake(WakeCurve((0.0,), (flat(1.0),)))
    raw = engine.run(problem, watch, watch.plan(problem), times, np.zeros(len(times), dtype=int),
                     duration_ms=3_000.0, wake=(wake,))
    assert raw.done_ms[0] - raw.arrival_ms[0] == pytest.approx(6.0)
    # The runtime's feedback times each block alone, so the first block's 1 ms wake cost is not in it.
    ratios = seen[-1].ratios()
    assert set(ratios) == {("a-b0", "cpu"), ("a-b1", "cpu")} and all(r == pytest.approx(1.0) for r in ratios.values())



def test_probe_samples_become_warm_and_cold_curves_by_gap_bins() -> None:
    from sparseloom.runtime.calibration import GAP_BINS, MIN_CURVE_SAMPLES, wake_of

    rng = np.random.default_rng(0)
    # A known cost: 0.05 ms per ms idle up to 10 ms, +1 ms when cold, noise of +-0.05 ms; a third queued.
    gaps = np.where(rng.random(600) < 1 / 3, 0.0, rng.exponential(5.0, 600))
    warm = rng.random(600) < 0.5
    cost = 0.05 * np.minimum(gaps, 10.0) + np.where(warm, 0.0, 1.0) + rng.uniform(-0.05, 0.05, 600)
    finish = 0.02 * np.minimum(gaps, 10.0) + rng.uniform(-0.05, 0.05, 600)
    wake = wake_of(list(zip(gaps.tolist(), warm.tolist(), cost.tolist(), finish.tolist())))
    assert wake is not None and wake.warm is not None and wake.cold is not None
    assert wake.warm.gaps_ms[0] == 0.0 and len(wake.warm.gaps_ms) == 1 + GAP_BINS
    for g in (0.0, 2.0, 5.0):
        assert wake.curve(True).cost(g) == pytest.approx(0.05 * g, abs=0.08)
        assert wake.curve(False).cost(g) == pytest.approx(1.0 + 0.05 * g, abs=0.08)
        # The finish cost is one curve over both warmths.
        assert wake.finish is not None and wake.finish.cost(g) == pytest.approx(0.02 * g, abs=0.08)
    # The spread is kept: the curve's extremes reach the noise's.
    assert wake.curve(True).cost(0.0, 1.0) - wake.curve(True).cost(0.0, 0.0) > 0.08
    # Too few cold samples: no cold curve, the warm one serves for both.
    # A dropped request's sample has a start cost and no finish cost.
    dropped = wake_of([(1.0, True, 0.5, float("nan"))] * MIN_CURVE_SAMPLES)
    assert dropped is not None and dropped.finish is None and dropped.curve(True).cost(1.0) == pytest.approx(0.5)
    few = [(1.0, False, 1.0, 0.0)] * (MIN_CURVE_SAMPLES - 1) + [(1.0, True, 0.0, 0.0)] * MIN_CURVE_SAMPLES
    thin = wake_of(few)
    assert thin is not None and thin.cold is None and thin.curve(False).cost(1.0) == pytest.approx(0.0)
    assert wake_of([]) is None


def test_measured_block_factors_make_the_truth_while_policies_plan_on_the_profile() -> None:
    from sparseloom.runtime.calibration import Probes, truth_of
    from sparseloom.sim.experiment import ProfileError

    problem, policy = _one_task()
    # Probe runs saw block 0 run at 3 ms (profile 2) five times, block 1 only twice (too few).
    probes = Probes(blocks=tuple([(("a-b0", "cpu"), 3.0)] * 5 + [(("a-b1", "cpu"), 9.0)] * 2))
    block_ms, factors = truth_of(problem, probes, min_samples=5)  # type: ignore[arg-type]
    assert block_ms == {"a-b0": 3.0} and factors == {"a-b0": pytest.approx(1.5)}
    at = Experiment(duration_s=1.0, profile_error=ProfileError(factors=tuple(factors.items())))
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([100.0])})
    res = simulate_in(at, problem, policy, arrivals)
    assert res.latencies_ms["a"][0] == pytest.approx(3.0 + 3.0)
    with pytest.raises(ValueError, match="factors must be > 0"):
        ProfileError(factors=(("a-b0", 0.0),))


def test_drift_compares_the_median_service_time_of_the_probe_runs_per_task() -> None:
    from sparseloom.runtime.calibration import Probes, drift

    nan = float("nan")  # a dropped request's: no service time, no part of the median
    before = Probes(requests=((0, 1.0, True, 1.5, 0.5, ()), (0, 1.0, True, 3.0, 1.0, ()), (0, 1.0, True, 9.0, nan, ()),
                              (1, 0.0, False, 9.0, 1.0, ())))
    after = Probes(requests=((0, 1.0, True, 3.0, 0.3, ()), (0, 1.0, True, 3.3, 0.0, ())))
    # digits: median 3.0 -> 3.3 (+10%); text ran only before: no figure.
    assert drift(["digits", "text"], before, after) == {"digits": pytest.approx(10.0)}
