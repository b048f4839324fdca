"""The simulator against cases solvable by hand, and its promises (memory, seeds, warm-up, re-plan)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from scheduler.plan import Plan
from scheduler.problem import Block, Problem, TaskSpec
from sparseloom.sim import (
    Arrivals,
    Experiment,
    ProfileError,
    SLOChangeEvent,
    compare,
    compare_workload,
    make_arrivals,
    max_sustainable_rate,
    min_memory_budget,
    simulate,
    unavoidable_rate,
)
from sparseloom.workload import Periodic, Poisson, Trace, load_workload
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def one_arrival_at(ms: float, task: str = "a", duration_s: float = 10.0) -> Arrivals:
    return Arrivals(0, duration_s, {task: np.asarray([ms])})


def test_md1_mean_wait_matches_formula() -> None:
    service_ms, rate_hz = 10.0, 60.0
    rho = rate_hz * service_ms / 1000.0
    # Pollaczek-Khinchine mean wait for deterministic service.
    expected_wait_ms = rho * service_ms / (2.0 * (1.0 - rho))
    task = chain_task("a", [{"cpu": service_ms}], slo_ms=1e5)
    problem = problem_of([task], memory_budget_mb=10)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    waits = []
    for seed in range(3):
        arrivals = make_arrivals(
            {"a": Poisson(process="poisson", rate_hz=rate_hz)}, 1500.0, seed
        )
        res = simulate(problem, policy, arrivals, warmup_s=20.0)
        waits.append(res.latency_ms.mean - service_ms)
        assert res.utilisation["cpu"] == pytest.approx(rho, rel=0.03)
    assert np.mean(waits) == pytest.approx(expected_wait_ms, rel=0.05)


def test_periodic_task_latency_is_blocks_plus_transfers() -> None:
    task = chain_task(
        "a",
        [{"cpu": 2.0}, {"gpu": 3.5, "cpu": 9.0}, {"cpu": 1.25}],
        output_mb=0.5,
        slo_ms=8.0,
    )
    problem = problem_of(
        [task],
        ["cpu", "gpu"],
        memory_budget_mb=100,
        transfer_latency_ms=0.1,
        transfer_mb_per_ms=1.0,
    )
    policy = FixedPolicy("fixed", {"a": ((0, 0, 0), ("cpu", "gpu", "cpu"))})
    arrivals = make_arrivals(
        {"a": Periodic(process="periodic", period_ms=50.0)}, 20.0, seed=3
    )
    res = simulate(problem, policy, arrivals, warmup_s=1.0)
    exact = 2.0 + (0.1 + 0.5) + 3.5 + (0.1 + 0.5) + 1.25
    lat = res.latencies_ms["a"]
    assert lat.size == 380
    np.testing.assert_allclose(lat, exact, rtol=0, atol=1e-9)
    assert res.slo_violation_rate == 0.0
    assert res.throughput_rps == pytest.approx(20.0, abs=0.1)
    assert res.utilisation["gpu"] == pytest.approx(3.5 / 50.0, rel=0.01)


def test_cold_blocks_load_at_storage_bandwidth_and_budget_holds() -> None:
    # Two 10 MB blocks on one processor, 15 MB budget: the second load must evict the first.
    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=10.0)
    problem = problem_of([task], memory_budget_mb=15.0, storage_mb_per_ms=1.0)
    policy = FixedPolicy("fixed", {"a": ((0, 0), ("cpu", "cpu"))})
    res = simulate(problem, policy, one_arrival_at(100.0))
    assert res.latencies_ms["a"][0] == pytest.approx(10.0 + 2.0 + 10.0 + 3.0)
    assert res.loads == 2 and res.evictions == 1
    assert res.load_ms == pytest.approx(20.0)
    assert res.peak_memory_mb == pytest.approx(10.0)


def test_prefetch_overlaps_loads_with_earlier_blocks() -> None:
    # Two cold 10 MB blocks, storage 1 MB/ms, room for both: block 1 loads while block 0 runs.
    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=10.0)
    problem = problem_of([task], memory_budget_mb=25.0, storage_mb_per_ms=1.0)
    policy = FixedPolicy("fixed", {"a": ((0, 0), ("cpu", "cpu"))})
    eager = simulate(problem, policy, one_arrival_at(100.0))
    lazy = simulate(problem, policy, one_arrival_at(100.0), prefetch=False)
    # b0 loads 0-10 and runs 10-12; b1 loads 10-20 and runs 20-23.
    assert eager.latencies_ms["a"][0] == pytest.approx(10.0 + 10.0 + 3.0)
    assert lazy.latencies_ms["a"][0] == pytest.approx(10.0 + 2.0 + 10.0 + 3.0)
    assert eager.loads == lazy.loads == 2 and eager.evictions == 0


def test_memory_budget_is_never_exceeded_under_contention() -> None:
    tasks = [
        chain_task(n, [{"cpu": 1.0, "gpu": 1.5}] * 3, memory_mb=12.0, slo_ms=200)
        for n in "abc"
    ]
    problem = problem_of(
        tasks, ["cpu", "gpu"], memory_budget_mb=50.0, storage_mb_per_ms=4.0
    )
    policy = FixedPolicy(
        "fixed",
        {
            "a": ((0, 0, 0), ("cpu", "gpu", "cpu")),
            "b": ((0, 0, 0), ("gpu", "gpu", "cpu")),
            "c": ((0, 0, 0), ("cpu", "cpu", "gpu")),
        },
    )
    specs = {n: Poisson(process="poisson", rate_hz=40.0) for n in "abc"}
    res = simulate(
        problem, policy, make_arrivals(specs, 60.0, 1), warmup_s=5.0, trace_until_s=60.0
    )
    assert res.evictions > 0 and res.loads > res.evictions
    assert res.peak_memory_mb <= 50.0 + 1e-9
    assert 0 < res.mean_memory_mb <= 50.0
    # Every request completed; every execution in the log ran a resident block.
    assert res.completed == res.requests
    log = res.schedule
    assert log is not None
    load_end = {}
    for b, start, dur in log.loads:
        assert dur == pytest.approx(12.0 / 4.0)
        load_end.setdefault(b, []).append(start + dur)
    for _, r, pos, b, start, _ in log.executions:
        block = problem.tasks[log.request_task[r]].positions[pos][0].digest
        assert log.blocks[b] == block
        assert any(end <= start + 1e-9 for end in load_end[b])


def test_resident_set_is_pinned_and_loaded_up_front() -> None:
    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=10.0)
    other = chain_task("b", [{"cpu": 1.0}], memory_mb=10.0)
    problem = problem_of([task, other], memory_budget_mb=30.0, storage_mb_per_ms=1.0)
    routes = {"a": ((0, 0), ("cpu", "cpu")), "b": ((0,), ("cpu",))}
    pinned = FixedPolicy("pinned", routes, resident=frozenset({"a-b0", "a-b1"}))
    arrivals = Arrivals(
        0, 10.0, {"a": np.asarray([500.0, 1500.0]), "b": np.asarray([1000.0])}
    )
    res = simulate(problem, pinned, arrivals)
    # Loaded at time 0 (20 ms of storage), never again: only b's block loads later.
    np.testing.assert_allclose(res.latencies_ms["a"], [5.0, 5.0])
    assert res.latencies_ms["b"][0] == pytest.approx(10.0 + 1.0)
    assert res.loads == 3 and res.evictions == 0


def test_same_seed_same_result_and_seeds_differ() -> None:
    tasks = [chain_task(n, [{"cpu": 3.0, "gpu": 2.0}] * 2, slo_ms=15.0) for n in "ab"]
    problem = problem_of(tasks, ["cpu", "gpu"], memory_budget_mb=100)
    policy = FixedPolicy(
        "fixed", {"a": ((0, 0), ("cpu", "gpu")), "b": ((0, 0), ("gpu", "cpu"))}
    )
    specs = {
        "a": Poisson(process="poisson", rate_hz=80.0),
        "b": Poisson(process="poisson", rate_hz=60.0),
    }
    one = simulate(problem, policy, make_arrivals(specs, 30.0, 7), warmup_s=2.0)
    two = simulate(problem, policy, make_arrivals(specs, 30.0, 7), warmup_s=2.0)
    other = simulate(problem, policy, make_arrivals(specs, 30.0, 8), warmup_s=2.0)
    for name in ("a", "b"):
        np.testing.assert_array_equal(one.latencies_ms[name], two.latencies_ms[name])
    assert one.slo_violation_rate == two.slo_violation_rate
    assert one.requests != other.requests or one.latency_ms != other.latency_ms


def test_warmup_requests_are_excluded() -> None:
    # Cold loads make only the first request slow; a warm-up that covers it removes it from the metrics.
    task = chain_task("a", [{"cpu": 1.0}], memory_mb=50.0, slo_ms=5.0)
    problem = problem_of([task], memory_budget_mb=100.0, storage_mb_per_ms=1.0)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    arrivals = Arrivals(0, 10.0, {"a": np.arange(0.0, 10_000.0, 100.0)})
    cold = simulate(problem, policy, arrivals)
    warm = simulate(problem, policy, arrivals, warmup_s=1.0)
    assert cold.requests == 100 and warm.requests == 90
    assert cold.per_task["a"].violations == 1 and cold.latency_ms.p50 == pytest.approx(
        1.0
    )
    assert warm.slo_violation_rate == 0.0
    assert warm.throughput_rps == pytest.approx(10.0)


@dataclass
class ReplanningPolicy(FixedPolicy):
    replans: int = 0

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        self.replans += 1
        return self.plan(problem)


def test_slo_change_replans_and_applies_the_new_slo() -> None:
    task = chain_task("a", [{"cpu": 4.0}], slo_ms=10.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    arrivals = Arrivals(0, 10.0, {"a": np.arange(0.0, 10_000.0, 100.0)})
    change = SLOChangeEvent(at_ms=5_000.0, task="a", latency_ms=3.0)
    plain = FixedPolicy("plain", {"a": ((0,), ("cpu",))})
    res = simulate(problem, plain, arrivals, slo_changes=[change])
    assert len(plain.plans) == 2 and plain.plans[1].task("a").latency_slo_ms == 3.0
    assert len(res.replan_ms) == 1 and res.replan_ms[0] >= 0.0
    # Requests from 5 s on take 4 ms > 3 ms.
    assert res.per_task["a"].latency_violations == 50
    with_replan = ReplanningPolicy("replanning", {"a": ((0,), ("cpu",))})
    simulate(problem, with_replan, arrivals, slo_changes=[change])
    assert with_replan.replans == 1


def test_accuracy_slo_violations_and_unknown_accuracy() -> None:
    low = chain_task("low", [{"cpu": 1.0}], base_accuracy=0.80, min_accuracy=0.85)
    ok = chain_task("ok", [{"cpu": 1.0}], base_accuracy=0.90, min_accuracy=0.85)
    unknown = chain_task(
        "unknown", [{"cpu": 1.0}], base_accuracy=None, min_accuracy=0.85
    )
    problem = problem_of([low, ok, unknown], memory_budget_mb=10.0)
    policy = FixedPolicy(
        "fixed", {n: ((0,), ("cpu",)) for n in ("low", "ok", "unknown")}
    )
    spec = Periodic(process="periodic", period_ms=100.0)
    res = simulate(
        problem,
        policy,
        make_arrivals({n: spec for n in ("low", "ok", "unknown")}, 10.0, 0),
    )
    assert res.per_task["low"].slo_violation_rate == 1.0
    assert res.per_task["low"].accuracy_violations == res.per_task["low"].requests
    assert res.per_task["ok"].slo_violation_rate == 0.0
    assert res.per_task["unknown"].slo_violation_rate == 0.0
    assert res.per_task["unknown"].accuracy_unknown == res.per_task["unknown"].requests
    assert res.per_task["unknown"].mean_accuracy is None
    assert res.mean_accuracy == pytest.approx(0.85)
    assert res.slo_violation_rate == pytest.approx(1 / 3, abs=0.01)


def test_compare_gives_every_policy_the_same_arrivals(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time_s\n0.5\n0.7\n2.25\n3.0\n")
    task = chain_task("a", [{"cpu": 1.0, "gpu": 2.0}])
    problem = problem_of([task], ["cpu", "gpu"], memory_budget_mb=10.0)
    fast = FixedPolicy("fast", {"a": ((0,), ("cpu",))})
    slow = FixedPolicy("slow", {"a": ((0,), ("gpu",))})
    cmp = compare(
        problem,
        [fast, slow],
        {"a": Trace(process="trace", file="t.csv")},
        Experiment(duration_s=5.0, seeds=3, base_dir=str(tmp_path)),
        progress=False,
    )
    assert cmp.seeds == (0, 1, 2)
    for name, lat in (("fast", 1.0), ("slow", 2.0)):
        summary = cmp.policies[name]
        assert [r.requests for r in summary.runs] == [4, 4, 4]
        assert summary.latency_p50_ms.mean == pytest.approx(lat)
        assert summary.latency_p50_ms.ci95 == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unique"):
        compare(
            problem,
            [fast, fast],
            {"a": Poisson(process="poisson", rate_hz=1)},
            Experiment(duration_s=1.0),
            progress=False,
        )


def test_confidence_interval_shrinks_with_more_seeds() -> None:
    task = chain_task("a", [{"cpu": 8.0}], slo_ms=20.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    spec = {"a": Poisson(process="poisson", rate_hz=90.0)}
    few = compare(
        problem, [policy], spec, Experiment(duration_s=20.0, seeds=3), progress=False
    ).policies["fixed"]
    many = compare(
        problem, [policy], spec, Experiment(duration_s=20.0, seeds=12), progress=False
    ).policies["fixed"]
    assert (
        few.slo_violation_rate.ci95 is not None
        and many.slo_violation_rate.ci95 is not None
    )
    assert 0 < many.slo_violation_rate.ci95 < few.slo_violation_rate.ci95
    assert (
        few.slo_violation_rate.low
        <= few.slo_violation_rate.mean
        <= few.slo_violation_rate.high
    )


def test_max_sustainable_rate_finds_the_service_capacity() -> None:
    # Periodic arrivals every 40 ms, 10 ms service: no queueing until the period drops below 10 ms.
    task = chain_task("a", [{"cpu": 10.0}], slo_ms=30.0, rate_hz=25.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    found = max_sustainable_rate(
        problem,
        policy,
        {"a": Periodic(process="periodic", period_ms=40.0)},
        Experiment(duration_s=30.0, warmup_s=1.0),
        progress=False,
    )
    assert found.bounded
    assert 3.85 <= found.rate_scale <= 4.2
    assert found.offered_rps == pytest.approx(25.0 * found.rate_scale, rel=0.02)
    assert found.slo_violation_rate <= 0.05
    # The policy planned for the scaled rates.
    assert any(p.task("a").rate_hz > 90.0 for p in policy.plans)


def test_min_memory_budget_finds_the_working_set() -> None:
    # Two 10 MB blocks: with 20 MB both stay resident; with less, every request reloads one
    # (10 ms at 1 MB/ms) and misses its 8 ms SLO. So the least budget at 0% violations is 20 MB.
    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=10.0, slo_ms=8.0, rate_hz=20.0)
    problem = problem_of([task], memory_budget_mb=160.0, storage_mb_per_ms=1.0)
    policy = FixedPolicy("fixed", {"a": ((0, 0), ("cpu", "cpu"))})
    spec = {"a": Periodic(process="periodic", period_ms=50.0)}
    found = min_memory_budget(problem, policy, spec, Experiment(duration_s=5.0, warmup_s=0.5), target=0.0,
                              tolerance=0.01, progress=False)
    assert found.memory_budget_mb is not None
    assert 20.0 <= found.memory_budget_mb <= 20.0 * 1.01
    assert found.slo_violation_rate == 0.0
    assert all((v == 0.0) == (b >= 20.0) for b, v in found.points)
    # A target the full budget cannot meet gives no budget, not a made-up one.
    tight = problem_of([chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], memory_mb=10.0, slo_ms=4.0)],
                       memory_budget_mb=160.0, storage_mb_per_ms=1.0)
    missed = min_memory_budget(tight, policy, spec, Experiment(duration_s=2.0), target=0.05, progress=False)
    assert missed.memory_budget_mb is None and missed.slo_violation_rate == 1.0 and not missed.bounded


def test_unrunnable_route_is_a_clear_error() -> None:
    task = chain_task("a", [{"cpu": 1.0}])
    problem = problem_of([task], ["cpu", "gpu"], memory_budget_mb=10.0)
    policy = FixedPolicy("bad", {"a": ((0,), ("gpu",))})
    with pytest.raises(ValueError, match="cannot run on 'gpu'"):
        simulate(problem, policy, one_arrival_at(1.0))


def test_policy_sees_queue_backlog() -> None:
    seen: list[float] = []

    @dataclass
    class Watching(FixedPolicy):
        def decide(self, task: str, plan: Plan, state):  # type: ignore[no-untyped-def]
            seen.append(state.backlog_ms("cpu"))
            assert state.is_resident("a-b0") and not state.is_resident("nope")
            return plan.routes[task]

    task = chain_task("a", [{"cpu": 10.0}], memory_mb=1.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    arrivals = Arrivals(0, 1.0, {"a": np.asarray([0.0, 1.0, 2.0])})
    simulate(
        problem,
        Watching("w", {"a": ((0,), ("cpu",))}, resident=frozenset({"a-b0"})),
        arrivals,
    )
    # Resident set loads instantly (infinite storage bandwidth); then 10 ms blocks queue up.
    assert seen == [0.0, 9.0, 18.0]


def test_empty_workload_gives_empty_metrics() -> None:
    task = chain_task("a", [{"cpu": 1.0}])
    problem = problem_of([task], memory_budget_mb=10.0)
    res = simulate(
        problem,
        FixedPolicy("fixed", {"a": ((0,), ("cpu",))}),
        Arrivals(0, 5.0, {"a": np.empty(0)}),
    )
    assert res.requests == 0 and res.decisions == 0 and res.block_executions == 0
    assert res.slo_violation_rate == 0.0 and res.throughput_rps == 0.0
    assert np.isnan(res.latency_ms.p99) and res.utilisation == {"cpu": 0.0}


def test_prefetch_does_not_evict_blocks_queued_requests_need() -> None:
    # 20 MB holds two of the three 10 MB blocks; c's prefetch must not evict b0, which a queued request needs.
    tasks = [chain_task(n, [{"cpu": 5.0}], memory_mb=10.0, slo_ms=100.0) for n in "abc"]
    problem = problem_of(tasks, memory_budget_mb=20.0, storage_mb_per_ms=10.0)
    policy = FixedPolicy("fixed", {n: ((0,), ("cpu",)) for n in "abc"})
    arrivals = Arrivals(
        0,
        1.0,
        {"a": np.asarray([0.0, 2.0]), "b": np.asarray([0.5]), "c": np.asarray([3.0])},
    )
    res = simulate(problem, policy, arrivals)
    # a0 loads 0-1 and runs 1-6; b0 loads 1-2 and runs 6-11; a runs again 11-16; c0 loads on demand 16-17.
    np.testing.assert_allclose(res.latencies_ms["a"], [6.0, 14.0])
    np.testing.assert_allclose(res.latencies_ms["b"], [10.5])
    np.testing.assert_allclose(res.latencies_ms["c"], [19.0])
    assert res.loads == 3 and res.evictions == 1


def test_compare_workload_uses_the_scenario(repo_root: Path) -> None:
    path = repo_root / "workloads" / "scenarios" / "stress.yaml"
    workload = load_workload(path)
    scenario = workload.scenario
    assert scenario is not None
    tasks = [
        chain_task(t.name, [{"cpu": 0.5, "gpu": 0.3}] * 2, slo_ms=t.slo.latency_ms)
        for t in workload.tasks
    ]
    problem = problem_of(
        tasks, ["cpu", "gpu"], memory_budget_mb=scenario.memory_budget_mb
    )
    policy = FixedPolicy(
        "fixed", {t.name: ((0, 0), ("cpu", "gpu")) for t in workload.tasks}
    )
    cmp = compare_workload(
        workload, problem, [policy], base_dir=path.parent, progress=False
    )
    assert cmp.duration_s == scenario.duration_s and cmp.warmup_s == scenario.warmup_s
    assert cmp.seeds == tuple(range(scenario.seed, scenario.seed + scenario.seeds))
    changes = sum(len(t.slo_changes) for t in workload.tasks)
    assert all(len(r.replan_ms) == changes for r in cmp.policies["fixed"].runs)
    assert len(policy.plans) == 1 + changes * scenario.seeds


def test_mg1_mean_wait_with_latency_spread() -> None:
    # Pollaczek-Khinchine: Wq = rho * S * (1 + cv^2) / (2 (1 - rho)) for mean service S.
    service_ms, rate_hz, cv = 10.0, 60.0, 0.5
    rho = rate_hz * service_ms / 1000.0
    expected_wait_ms = rho * service_ms * (1 + cv**2) / (2.0 * (1.0 - rho))
    task = chain_task("a", [{"cpu": service_ms}], slo_ms=1e5)
    problem = problem_of([task], memory_budget_mb=10)
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",))})
    waits = []
    for seed in range(3):
        arrivals = make_arrivals(
            {"a": Poisson(process="poisson", rate_hz=rate_hz)}, 1500.0, seed
        )
        res = simulate(problem, policy, arrivals, warmup_s=20.0, latency_cv=cv)
        mean_service = res.utilisation["cpu"] / rate_hz * 1000.0
        assert mean_service == pytest.approx(service_ms, rel=0.03)
        waits.append(res.latency_ms.mean - mean_service)
    assert np.mean(waits) == pytest.approx(expected_wait_ms, rel=0.06)
    again = simulate(problem, policy, arrivals, warmup_s=20.0, latency_cv=cv)
    assert again.latency_ms == res.latency_ms


def test_a_replan_costs_simulated_time_while_the_old_plan_serves() -> None:
    """The re-planned route serves only ``work x REPLAN_MS_PER_WORK`` after the SLO change; requests in
    between still take the old route. More solver work, a later switch."""
    from sparseloom.sim.runner import REPLAN_MS_PER_WORK

    slow, fast = Block("slow", "s0", 1.0, {"cpu": 4.0}), Block("fast", "f0", 1.0, {"cpu": 1.0})
    task = TaskSpec("a", "m", 10.0, 0.0, 10.0, ((slow, fast),), (0.0,))
    problem = problem_of([task], memory_budget_mb=10.0)

    @dataclass
    class Switching(FixedPolicy):
        work: int = 0

        def replan(self, problem: Problem, plan: Plan) -> Plan:
            new = FixedPolicy("x", {"a": ((1,), ("cpu",))}).plan(problem)
            return replace(new, info=replace(new.info, work=self.work))

    arrivals = Arrivals(0, 2.0, {"a": np.arange(0.0, 2_000.0, 20.0)})
    change = SLOChangeEvent(at_ms=100.0, task="a", latency_ms=3.0)
    served_old = []
    for work in (0, 1000, 3000):
        res = simulate(problem, Switching("p", {"a": ((0,), ("cpu",))}, work=work), arrivals, slo_changes=[change])
        lat = res.latencies_ms["a"]
        arr = np.arange(0.0, 2_000.0, 20.0)
        after = arr >= 100.0
        old = int(np.sum(lat[after] > 2.0))
        ready = 100.0 + work * REPLAN_MS_PER_WORK
        assert old == int(np.sum((arr >= 100.0) & (arr < ready)))
        served_old.append(old)
    assert served_old[0] == 0 and 0 < served_old[1] < served_old[2]


def test_profile_error_makes_the_truth_slower_while_policies_plan_on_the_profile() -> None:

    task = chain_task("a", [{"cpu": 2.0}, {"cpu": 3.0}], slo_ms=100.0)
    problem = problem_of([task], memory_budget_mb=10.0)
    arrivals = Arrivals(0, 1.0, {"a": np.arange(0.0, 1_000.0, 50.0)})
    seen: list[float] = []

    @dataclass
    class Watching(FixedPolicy):
        def decide(self, task: str, plan: Plan, state):  # type: ignore[no-untyped-def]
            seen.append(state.backlog_ms("cpu"))
            return plan.routes[task]

    exact = simulate(problem, Watching("w", {"a": ((0, 0), ("cpu", "cpu"))}), arrivals)
    slow = simulate(problem, Watching("w", {"a": ((0, 0), ("cpu", "cpu"))}), arrivals,
                    profile_error=ProfileError(scale=1.25))
    assert exact.latency_ms.p50 == pytest.approx(5.0) and slow.latency_ms.p50 == pytest.approx(6.25)
    assert max(seen) == 0.0  # 50 ms apart: no request ever waits, in either run
    factors = ProfileError(block_cv=0.3, seed=4).block_factors(problem)
    assert factors == ProfileError(block_cv=0.3, seed=4).block_factors(problem) and factors is not None
    assert len(set(factors)) == 2 and all(f > 0 for f in factors)
    with pytest.raises(ValueError):
        ProfileError(scale=0.0)


def test_a_variant_refuted_by_measurement_is_planned_away_before_the_run() -> None:
    """The estimate says the fast variant meets the accuracy SLO; measured, it does not. The verdict
    measures what the plans serve, the ILP cuts the refuted variant off, and the run serves the
    variant that measurement supports, for every ILP policy alike."""
    from scheduler import registry
    from sparseloom.sim import compare

    slow = Block("slow", "s0", 1.0, {"cpu": 4.0}, 0.0)
    fast = Block("fast", "f0", 1.0, {"cpu": 1.0}, -0.01)
    task = TaskSpec("a", "m", 10.0, 0.85, 10.0, ((slow, fast),), (0.0,), base_accuracy=0.9)
    problem = problem_of([task], memory_budget_mb=10.0)
    truth = {(0,): 0.9, (1,): 0.80}
    asked: list[set[tuple[int, ...]]] = []

    def verdict(plans: dict[str, Plan]) -> Problem:
        served = {r.options for p in plans.values() for r in (*p.routes.values(), *p.alternatives.get("a", ()))}
        asked.append(served)
        t = replace(task, measured_accuracy={c: truth[c] for c in served})
        return replace(problem, tasks=(t,))

    plain = registry.create("sparseloom").plan(problem)
    assert plain.routes["a"].options == (1,)  # on the estimate, fast wins
    cmp = compare(problem, [registry.create("sparseloom"), registry.create("av-p")],
                  {"a": Poisson(process="poisson", rate_hz=10.0)}, Experiment(duration_s=2.0), progress=False, verdict=verdict)
    for name in ("sparseloom", "av-p"):
        assert cmp.plans[name].routes["a"].options == (0,)
        assert cmp.policies[name].runs[0].per_task["a"].accuracy_violations == 0
    assert (1,) in asked[0]


def test_unavoidable_violations_are_the_requests_whose_slo_is_below_the_fastest_variant() -> None:
    # 'slow' needs 8 ms and its SLO tightens from 10 to 5 ms at 4 s: every request after that misses
    # under any policy, and the floor counts exactly those (after warm-up), nothing of 'fast'.
    slow = chain_task("slow", [{"cpu": 8.0}], slo_ms=10.0)
    fast = chain_task("fast", [{"cpu": 1.0}], slo_ms=10.0)
    problem = problem_of([slow, fast], memory_budget_mb=10.0)
    arrivals = Arrivals(0, 10.0, {"slow": np.arange(500.0, 10_000.0, 1000.0),
                                  "fast": np.arange(500.0, 10_000.0, 1000.0)})
    change = SLOChangeEvent(4000.0, "slow", latency_ms=5.0)
    changed = Experiment(duration_s=10.0, warmup_s=1.0, slo_changes=(change,))
    assert unavoidable_rate(problem, arrivals, changed) == pytest.approx(6 / 18)
    assert unavoidable_rate(problem, arrivals, Experiment(duration_s=10.0, warmup_s=1.0)) == 0.0
    # The truth at 1.5x the profile puts 'slow' (12 ms) over its first SLO too.
    assert unavoidable_rate(problem, arrivals, replace(changed, profile_error=ProfileError(scale=1.5))) == pytest.approx(9 / 18)
    policy = FixedPolicy("fixed", {"slow": ((0,), ("cpu",)), "fast": ((0,), ("cpu",))})
    cmp = compare(problem, [policy], {"slow": Periodic(process="periodic", period_ms=100.0),
                                      "fast": Periodic(process="periodic", period_ms=100.0)},
                  Experiment(duration_s=10.0, warmup_s=1.0, slo_changes=(change,)), progress=False)
    assert cmp.unavoidable_rate == pytest.approx(cmp.policies["fixed"].slo_violation_rate.mean, abs=0.02)
    assert cmp.unavoidable_rate > 0.25
