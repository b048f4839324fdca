"""The real runtime on a real digits pool: outputs, memory budget, overload, SLO switches, API misuse."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import sparseloom as sl
from scheduler import registry
from scheduler.feedback import FEEDBACK_EVERY_MS, MIN_SAMPLES
from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policies.sparseloom import latency_factors
from scheduler.policy import PolicyBase, QueueView
from scheduler.problem import Problem
from scheduler.routes import evaluate
from sparseloom.runtime import Rejected, Runtime
from sparseloom.runtime.replay import replay
from sparseloom.sim import RunResult
from sparseloom.sim.experiment import Experiment
from sparseloom.sim.runner import Arrivals, make_arrivals
from sparseloom.workload import Poisson
from stitching.pool import Pool
from stitching.zoo import load as zoo_load
from tests.sparseloom.runtime_helpers import FixedRoutes, digits_problem, host_soc

pytestmark = pytest.mark.wallclock  # drives the real runtime on the wall clock: run alone, not beside other tests


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x = torch.from_numpy((load_digits().images[:32] / 16.0).astype(np.float32))
    return x[:, None]


def chain(pool: Pool, digests: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    """The torch reference: the same blocks run one after the other in eager mode."""
    xs: tuple[torch.Tensor, ...] = (x,)
    with torch.no_grad():
        for d in digests:
            xs = pool.load_module(d).run(*xs)
    return xs[0]


def test_tvm_outputs_equal_torch(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool, ("cpu0",), variants=("dense",))
    with Runtime(problem, registry.create("sparseloom"), host_soc("tvm", 1), pool, cache_dir=dirs / "cc") as rt:
        route = rt.plan.routes["digits"]
        outs = [rt.submit("digits", images[i : i + 1]) for i in range(8)]
        got = torch.cat([f.result(timeout=60) for f in outs])
    want = chain(pool, route.digests, images[:8])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # The dense chain is the zoo model itself: the runtime's digits are the model's digits.
    base = zoo_load("digits_cnn", dirs / "cache")
    with torch.no_grad():
        whole = base.whole(images[:8])
    assert torch.equal(got.argmax(1), whole.argmax(1))


def test_blocks_flow_across_workers_with_real_outputs(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool)
    policy = FixedRoutes(problem, [((0, 1), ("cpu0", "cpu1")), ((1, 0), ("cpu1", "cpu0"))])
    with Runtime(problem, policy, host_soc(), pool, cache_dir=dirs / "cc") as rt:
        futures = [rt.submit("digits", images[i : i + 1]) for i in range(16)]
        got = [f.result(timeout=30) for f in futures]
        stats = rt.stats()
    for i, out in enumerate(got):
        route = policy.routes[i % 2]
        torch.testing.assert_close(out, chain(pool, route.digests, images[i : i + 1]), atol=1e-5, rtol=1e-5)
    assert stats.completed == 16 and stats.errors == 0
    assert all(u > 0 for u in stats.utilisation.values()), stats.utilisation


def test_memory_budget_respected_with_loads_and_evictions(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    full = digits_problem(pool)
    sizes = sorted({o.memory_mb for opts in full.tasks[0].positions for o in opts})
    # Room for one route's two largest blocks, not for all four: switching routes must evict.
    budget = sizes[-1] + sizes[-2] + 1e-6
    assert budget < sum(sizes)
    problem = dataclasses.replace(full, memory_budget_mb=budget)
    routes = [((a, b), ("cpu0", "cpu1")) for a, b in itertools.product((0, 1), repeat=2)]
    policy = FixedRoutes(problem, routes)
    with Runtime(problem, policy, host_soc(), pool, cache_dir=dirs / "cc") as rt:
        outs = []
        for i in range(12):  # one at a time, so each route's blocks must be loaded in turn
            outs.append(rt.submit("digits", images[i : i + 1]).result(timeout=30))
        stats = rt.stats()
    assert stats.peak_resident_mb <= budget + 1e-9
    assert stats.evictions > 0 and stats.loads > 4
    for i, out in enumerate(outs):
        torch.testing.assert_close(out, chain(pool, policy.routes[i % 4].digests, images[i : i + 1]), atol=1e-5, rtol=1e-5)


def test_overload_at_five_times_capacity_stays_bounded(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool, ("cpu0",), latency_slo_ms=20.0, variants=("dense",))
    limit = 16
    with Runtime(problem, registry.create("sparseloom"), host_soc("torch", 1), pool, cache_dir=dirs / "cc",
                 max_in_flight=limit) as rt:
        x = images[:1]
        times = []
        for _ in range(30):  # capacity: one request at a time, measured here
            t0 = time.perf_counter()
            rt.submit("digits", x).result(timeout=10)
            times.append(time.perf_counter() - t0)
        capacity_hz = 1.0 / statistics.median(times)
        rss_before = rt.rss_mb()
        duration_s = 1.0
        rate = 5.0 * capacity_hz
        arrivals = Arrivals(0, duration_s, {"digits": np.arange(0.0, duration_s * 1000.0, 1000.0 / rate)})
        peak_in_flight = 0

        def watch(_: Runtime) -> None:
            nonlocal peak_in_flight
            peak_in_flight = max(peak_in_flight, rt.in_flight)

        t0 = time.perf_counter()
        futures = replay(rt, arrivals, lambda task: (x,), every_s=0.01, on_tick=watch, drain_s=10.0).futures
        wall = time.perf_counter() - t0
        stats = rt.stats()
        rss_after = rt.rss_mb()
    assert wall < duration_s + 10.0  # terminated: no hang
    assert all(f.done() for f in futures)
    done = [f for f in futures if f.exception() is None]
    rejected = [f for f in futures if isinstance(f.exception(), Rejected)]
    assert len(done) + len(rejected) == len(futures)
    assert done and rejected, (len(done), len(rejected))  # keeps answering, and sheds the excess
    assert stats.rejected == len(rejected) and stats.slo_violation_rate > 0
    assert peak_in_flight <= limit
    assert stats.peak_resident_mb <= problem.memory_budget_mb
    assert rss_after - rss_before < 100.0, (rss_before, rss_after)
    # Offered at least 3x what was served: the run really was overloaded.
    assert len(futures) >= 3 * len(done) or stats.slo_violation_rate > 0.5


def test_set_slo_switches_stitched_variant_live(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool, ("cpu0",), latency_slo_ms=50.0)
    # Kept even when late: this test wants the switched variant's real outputs.
    policy = registry.create("sparseloom", dispatch="accuracy", drop_late=False)
    with Runtime(problem, policy, host_soc("torch", 1), pool, cache_dir=dirs / "cc") as rt:
        rt.submit("digits", images[:1]).result(timeout=10)
        before = rt.stats().per_task["digits"].variant
        plan = rt.set_slo("digits", latency_ms=0.7)
        rt.wait_replans()
        out = rt.submit("digits", images[:1]).result(timeout=10)
        after = rt.stats().per_task["digits"]
    assert before == ("dense", "dense")  # most accurate route in time under the loose SLO
    assert plan.slo_ms["digits"] == pytest.approx(0.7)
    assert after.variant == ("structured-0.5", "structured-0.5")  # the only route of 0.6 ms
    assert after.latency_slo_ms == pytest.approx(0.7)
    digests = tuple(pool.block("digits", p, "structured-0.5").digest for p in range(2))
    torch.testing.assert_close(out, chain(pool, digests, images[:1]), atol=1e-5, rtol=1e-5)


def test_a_request_that_cannot_finish_in_time_is_dropped_as_in_the_simulator(
        pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    # Every route takes longer than the 1 us SLO, so each request is hopeless when its first block would start.
    problem = digits_problem(pool, ("cpu0",), latency_slo_ms=0.001)
    for drop in (True, False):
        with Runtime(problem, registry.create("sparseloom", drop_late=drop), host_soc("torch", 1), pool,
                     cache_dir=dirs / "cc") as rt:
            fut = rt.submit("digits", images[:1])
            if drop:
                with pytest.raises(Rejected, match="dropped"):
                    fut.result(timeout=10)
            else:
                fut.result(timeout=10)
            rt.drain()
            stats = rt.stats()
        assert (stats.rejected, stats.completed) == ((1, 0) if drop else (0, 1))
        assert stats.slo_violation_rate == 1.0
        # Dropped before any block ran, it is still a wake sample: the worker's pick-up from when it
        # took the request (queueing before that, which the simulator models itself, is not in it)
        # to the check, with no finish cost.
        assert rt.recorder.wakes == 1
        (_, gap, _, head, tail, digests), = rt.recorder.wake_samples()
        assert gap >= 0.0 and head >= 0.0 and len(digests) == (1 if drop else len(problem.tasks[0].positions))
        assert math.isnan(tail) if drop else tail > 0.0


def test_a_request_dropped_after_a_block_ran_is_a_wake_sample_without_a_finish_cost() -> None:
    from sparseloom.runtime.stats import Recorder

    rec = Recorder(["a"], ["cpu"])
    done, dropped = rec.arrive(0.0, 0, 5.0, None, False, 0), rec.arrive(1.0, 0, 5.0, None, False, 0)
    rec.done(done, 4.0, 3.0, 3.0, (2.0, True, 0.5, 2.5, ("b0", "b1")))
    rec.reject(dropped, woke=(0.0, True, 4.0, 6.0, ("b0", "b1")))
    first, second = rec.wake_samples()
    assert first == (0, 2.0, True, 2.0, 1.5, ("b0", "b1"))
    assert second[:4] == (0, 0.0, True, 2.0) and math.isnan(second[4]) and second[5] == ("b0", "b1")
    assert rec.wakes == 2 and rec.wake_samples(1) == [second] and rec.completions == 1


class _CheapAndHeavy(PolicyBase):
    """"cheap" on the fast variant with a tight SLO, "heavy" on the dense one: the admission test's pair."""

    name = "cheap-heavy"
    drop_late = True

    def plan(self, problem: Problem) -> Plan:
        by = {t.name: t for t in problem.tasks}
        routes = {"cheap": evaluate(problem, by["cheap"], (1, 1), ("cpu0", "cpu0")),
                  "heavy": evaluate(problem, by["heavy"], (0, 0), ("cpu0", "cpu0"))}
        return Plan(routes, SolveInfo("fixed", "given", 0.0), policy=self.name, slo_ms={"cheap": 0.8, "heavy": 50.0})

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return plan.routes[task]


@pytest.mark.parametrize("admission", [True, False])
def test_the_runtime_sheds_a_heavy_request_that_would_cost_more_cheap_ones_as_in_the_simulator(
        admission: bool, pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    # Modelled blocks: heavy 2 x 0.6 ms, cheap 2 x 0.3 ms with 0.2 ms of slack. Cheap requests submitted
    # back to back arrive at thousands per second, so a heavy block would make several of them miss.
    problem = digits_problem(pool, ("cpu0",), tasks=("cheap", "heavy"))
    policy = _CheapAndHeavy()
    policy.admission = admission
    with Runtime(problem, policy, host_soc("torch", 1), pool, cache_dir=dirs / "cc") as rt:
        cheap = [rt.submit("cheap", images[:1]) for _ in range(20)]
        heavy = rt.submit("heavy", images[:1])
        if admission:
            with pytest.raises(Rejected, match="shed"):
                heavy.result(timeout=10)
        else:
            heavy.result(timeout=10)
        futures.wait(cheap, timeout=30)
        rt.drain()
    assert not any(isinstance(f.exception(), Rejected) and "shed" in str(f.exception()) for f in cheap)


def test_result_has_the_simulators_shape(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool, ("cpu0",))
    with Runtime(problem, registry.create("sparseloom"), host_soc("torch", 1), pool, cache_dir=dirs / "cc") as rt:
        arrivals = Arrivals(0, 0.5, {"digits": np.arange(0.0, 500.0, 25.0)})
        rt.recorder.tap()
        done = replay(rt, arrivals, lambda t: (images[:1],))
        runs = rt.recorder.untap()
        samples = rt.recorder.wake_samples()
        res = rt.result(duration_s=0.5, origin_ms=done.start_ms)
    assert isinstance(res, RunResult)
    assert res.requests == 20 and res.completed == 20
    # One request at a time, two blocks each: the start cost's span holds the first block's run, the
    # finish cost's the last block's (the split the simulator charges them by).
    assert len(samples) == 20 and len(runs) == 40 and all(len(s[5]) == 2 for s in samples)
    for i, (_, gap, warm, head, tail, _) in enumerate(samples):
        assert gap > 0 and warm == (i > 0)
        assert head >= runs[2 * i][1] and tail >= runs[2 * i + 1][1]
    assert res.per_task["digits"].latency_ms.p50 > 0
    assert 0 < res.utilisation["cpu0"] < 1


def test_pipeline_api_over_a_built_problem(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    problem = digits_problem(pool, ("cpu0",), tasks=("a", "b"))
    with sl.Pipeline.from_problem(problem, host_soc("torch", 1), pool, cache_dir=dirs / "api") as pipe:
        out = pipe.submit("a", images[:1]).result(timeout=10)
        pipe.submit("b", images[1:2]).result(timeout=10)
        pipe.set_slo("b", latency_ms=0.7)
        pipe.runtime.wait_replans()
        # At 0.7 ms this host may not make it in time, so the request may be dropped: wait, either way.
        futures.wait([pipe.submit("b", images[1:2])], timeout=10)
        stats = pipe.stats()
        with pytest.raises(sl.InputError, match="a task of this pipeline \\(a, b\\)"):
            pipe.submit("c", images[:1])
        with pytest.raises(sl.InputError, match="SLO.latency_ms"):
            pipe.set_slo("a", latency_ms=-3)
    assert out.shape == (1, 10)
    assert set(stats.per_task) == {"a", "b"}
    assert stats.per_task["b"].variant == ("structured-0.5", "structured-0.5")
    assert stats.per_task["a"].completed == 1 and stats.source == "measured"
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.completed = 0  # type: ignore[misc]


def test_bad_api_use_raises_input_error(repo_root: Path, tmp_path: Path) -> None:
    soc = sl.SoC.load(repo_root / "workloads" / "socs" / "host.yaml")
    with pytest.raises(sl.InputError, match="SLO.latency_ms: expected greater than 0"):
        sl.SLO(latency_ms=0)
    with pytest.raises(sl.InputError, match="SLO.min_accuracy: expected less than or equal to 1"):
        sl.SLO(latency_ms=5, min_accuracy=1.5)
    with pytest.raises(sl.InputError, match="memory_budget: expected a memory size"):
        sl.Pipeline(soc, memory_budget="two gigs")
    with pytest.raises(sl.InputError, match="policy: expected one of"):
        sl.Pipeline(soc, policy="fastest")
    pipe = sl.Pipeline(soc, memory_budget="2GB", cache_dir=tmp_path)
    assert pipe.memory_budget_mb == pytest.approx(2e9 / 2**20)
    with pytest.raises(sl.InputError, match=r"add_task\('x'\)\.input_shape: expected the module's input shape"):
        pipe.add_task("x", model=torch.nn.Linear(4, 4), slo=sl.SLO(latency_ms=5))
    with pytest.raises(sl.InputError, match=r"add_task\('x'\)\.model: expected a model SparseLoom can partition.*"
                       "found 'resnet9000'"):
        pipe.add_task("x", model="resnet9000", slo=sl.SLO(latency_ms=5))
    with pytest.raises(sl.InputError, match="partition.blocks"):
        pipe.add_task("x", model="digits_cnn", slo=sl.SLO(latency_ms=5), partition=0)
    with pytest.raises(sl.InputError, match="rate_hz"):
        pipe.add_task("x", model="digits_cnn", slo=sl.SLO(latency_ms=5), rate_hz=0)
    pipe.add_task("digits", model="digits_cnn", slo=sl.SLO(latency_ms=5, min_accuracy=0.9), rate_hz=20)
    with pytest.raises(sl.InputError, match="a new task name"):
        pipe.add_task("digits", model="digits_cnn", slo=sl.SLO(latency_ms=5))
    with pytest.raises(sl.InputError, match="task: expected a task of this pipeline \\(digits\\), found 'text'"):
        pipe.set_slo("text", latency_ms=5)
    with pytest.raises(sl.InputError, match="build\\(\\) called first"):
        pipe.submit("digits", torch.zeros(1, 1, 8, 8))
    assert [t.name for t in pipe.workload().tasks] == ["digits"]
    with pytest.raises(sl.InputError, match="expected an SoC with a processor present"):
        _absent_processor(tmp_path)


def _absent_processor(tmp_path: Path) -> None:
    """A pipeline over an SoC whose only processor (an NPU) is not on this host."""
    from backends.processor import PeakRates, ProcessorSpec, SoCSpec, TransferSpec
    from scheduler.problem import Block, ProcessorInfo, TaskSpec

    npu = ProcessorSpec(name="npu0", kind="npu", target={"kind": "llvm"}, peak_gops=PeakRates(fp32=100.0),
                        memory_bandwidth_gbps=10.0, source="test")
    soc = SoCSpec(name="phone", memory_mb=1000.0, storage_read_gbps=1.0,
                  transfer=TransferSpec(latency_us=0.0, bandwidth_gbps=1.0), processors=(npu,), source="test")
    opt = Block("dense", "0" * 64, 1.0, {"npu0": 1.0})
    problem = Problem((TaskSpec("t", "m", 5.0, 0.0, 1.0, ((opt,),), (0.0,)),), (ProcessorInfo("npu0", "npu"),), 10.0)
    sl.Pipeline.from_problem(problem, soc, None, cache_dir=tmp_path)


def test_calibrate_measures_errors_and_corrections(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    from sparseloom.runtime.calibration import calibrate, corrected_problem

    problem = digits_problem(pool, ("cpu0",), latency_slo_ms=5.0, variants=("dense",))
    specs = {"digits": Poisson(process="poisson", rate_hz=100.0)}
    arrivals = make_arrivals(specs, 1.0, seed=0)
    probes = [make_arrivals(specs, 1.0, seed=s) for s in (11, 12)]
    cal = calibrate(problem, "sparseloom", host_soc("torch", 1), pool, Experiment(duration_s=1.0), arrivals,
                    lambda t: (images[:1],), cache_dir=dirs / "cc", probes=probes)
    assert cal.real.requests == arrivals.count == cal.simulated.requests
    assert {c.digest for c in cal.corrections} == {o.digest for opts in problem.tasks[0].positions for o in opts}
    assert all(c.measured_ms > 0 and c.samples >= 5 for c in cal.corrections)
    fixed = corrected_problem(problem, cal.corrections)
    for opts in fixed.tasks[0].positions:
        c = next(c for c in cal.corrections if c.digest == opts[0].digest)
        assert opts[0].latency_ms["cpu0"] == c.measured_ms and opts[0].latency_source == "measured"
    # The wake curves come from the probe runs' requests, before and after the window (out of
    # sample); with one task every request follows the same task's, so there is a warm curve only.
    # Every completed probe request is a sample, and every one a late check dropped (a real run may
    # refuse a few at arrival, which never reach a worker).
    sent = sum(p.count for p in probes)
    assert 0.9 * sent <= cal.probe_samples <= sent and set(cal.wake) == {"digits"}
    wake = cal.wake["digits"]
    assert wake.cold is None and wake.warm is not None and len(wake.warm.gaps_ms) >= 2
    assert wake.finish is not None and len(wake.finish.gaps_ms) >= 2
    assert cal.window_overhead_ms > 0
    assert set(cal.drift_pct) == {"digits"} and math.isfinite(cal.drift_pct["digits"])
    shifted = corrected_problem(problem, (), 0.25)
    first, second = shifted.tasks[0].positions
    assert first[0].latency_ms["cpu0"] == pytest.approx(problem.tasks[0].positions[0][0].latency_ms["cpu0"] + 0.25)
    assert second[0].latency_ms == problem.tasks[0].positions[1][0].latency_ms
    # Each simulation has a finite, computed error against the real run.
    for err in (cal.before, cal.adjusted_error, cal.after):
        assert math.isfinite(err.p50_error_pct) and math.isfinite(err.violation_error_points)
    assert cal.adjusted.latency_ms.p50 != cal.simulated.latency_ms.p50
    assert cal.corrected.latency_ms.p50 != cal.simulated.latency_ms.p50


def test_records_stay_bounded_and_totals_count_everything() -> None:
    from sparseloom.runtime.stats import Recorder

    rec = Recorder(["a", "b"], ["cpu0"], max_records=100)
    for i in range(1000):
        rid = rec.arrive(float(i), i % 2, 5.0, None, False, 1000)
        if i % 10 == 0:
            rec.reject(rid)
        else:
            rec.done(rid, float(i) + 1.0, run_ms=0.75, expected_ms=0.5)
    assert len(rec.arrival_ms) <= 100 and rec.dropped >= 900
    # Per-request overheads cover the completed requests only, and the latest ones when asked.
    assert rec.completions == 900 and rec.overheads_ms(since=898) == [0.25, 0.25]
    assert rec.overheads_ms(since=899, over="expected") == [0.5]
    total, rejected, flying = rec.counts()
    assert total.tolist() == [500, 500] and rejected.tolist() == [100, 0] and flying.sum() == 0
    raw = rec.raw(finished_only=True, peak_mb=0.0, loads=0, load_ms=0.0, evictions=0)
    assert raw.arrival_ms[-1] == 999.0 and len(raw.arrival_ms) == len(rec.arrival_ms)


@pytest.mark.parametrize("name", ["band-lsf", "band-heft"])
def test_bands_global_queue_runs_for_real_with_real_outputs(name: str, pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    # A loose SLO: Band drops late jobs, and this test is about outputs and draining, not deadlines.
    problem = digits_problem(pool, variants=("dense",), latency_slo_ms=10_000.0)
    digests = tuple(opts[0].digest for opts in problem.tasks[0].positions)
    with Runtime(problem, registry.create(name), host_soc(), pool, cache_dir=dirs / "cc") as rt:
        outs = [rt.submit("digits", images[i : i + 1]) for i in range(8)]
        for i, f in enumerate(outs):
            torch.testing.assert_close(f.result(timeout=60), chain(pool, digests, images[i : i + 1]), rtol=1e-4, atol=1e-4)
        assert rt.stats().errors == 0 and rt.in_flight == 0
        # Closing stops admission; the requests still queued for their next block finish.
        late = [rt.submit("digits", images[i : i + 1]) for i in range(8)]
    assert all(f.done() and f.exception() is None for f in late)


def test_the_runtime_closes_the_loop_on_measured_block_latencies(pool: Pool, dirs: Path, images: torch.Tensor) -> None:
    # The profile says every block takes 1 us: real runs on this host are far slower, so once each block
    # has enough executions the policy re-plans on what was measured, off the hot path.
    problem = digits_problem(pool, ("cpu0",))
    tiny = dataclasses.replace(problem, tasks=tuple(
        dataclasses.replace(t, positions=tuple(
            tuple(dataclasses.replace(o, latency_ms={k: 0.001 for k in o.latency_ms}) for o in pos)
            for pos in t.positions)) for t in problem.tasks))
    for closed in (True, False):
        policy = registry.create("sparseloom", drop_late=False)
        policy.closed_loop = closed
        with Runtime(tiny, policy, host_soc("torch", 1), pool, cache_dir=dirs / "cc") as rt:
            for _ in range(MIN_SAMPLES + 5):
                rt.submit("digits", images[:1]).result(timeout=10)
            time.sleep(FEEDBACK_EVERY_MS / 1000.0)
            rt.submit("digits", images[:1]).result(timeout=10)
            rt.wait_replans()
            factors = latency_factors(rt.plan)
            replans = rt.stats().replans
        if closed:
            assert replans >= 1
            assert factors and min(factors.values()) > 10.0
        else:
            assert (replans, dict(factors)) == (0, {})


class _Fatal(BaseException):
    """An error that gets past ``except Exception``: it kills the worker thread that meets it."""


def _failing_on(rt: Runtime, processor: str, error: BaseException) -> None:
    acquire = rt.residency.acquire

    def patched(digest: str, proc: str) -> object:
        runner = acquire(digest, proc)
        if proc != processor:
            return runner

        def broken(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            raise error
        return broken
    rt.residency.acquire = patched  # type: ignore[method-assign,assignment]


def test_a_block_that_raises_fails_its_request_and_the_others_are_served(pool: Pool, dirs: Path,
                                                                           images: torch.Tensor) -> None:
    problem = digits_problem(pool)
    policy = FixedRoutes(problem, [((0, 0), ("cpu0", "cpu0")), ((0, 0), ("cpu1", "cpu1"))])
    with Runtime(problem, policy, host_soc(), pool, cache_dir=dirs / "cc") as rt:
        _failing_on(rt, "cpu1", ValueError("bad block"))
        outs = [rt.submit("digits", images[i : i + 1]) for i in range(8)]
        for i, fut in enumerate(outs):
            if i % 2:
                with pytest.raises(ValueError, match="bad block"):
                    fut.result(timeout=30)
            else:
                assert fut.result(timeout=30).shape == (1, 10)
        assert rt.stats().errors == 4 and rt.dead_workers == {}


def test_a_worker_that_dies_is_reported_and_its_requests_fail_instead_of_waiting(
        pool: Pool, dirs: Path, images: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    problem = digits_problem(pool)
    policy = FixedRoutes(problem, [((0, 0), ("cpu0", "cpu0")), ((0, 0), ("cpu1", "cpu1"))])
    rt = Runtime(problem, policy, host_soc(), pool, cache_dir=dirs / "cc")
    _failing_on(rt, "cpu1", _Fatal())
    outs = [rt.submit("digits", images[i : i + 1]) for i in range(12)]
    served = failed = 0
    for i, fut in enumerate(outs):
        if i % 2:
            with pytest.raises(sl.runtime.WorkerDied, match="cpu1 worker died"):
                fut.result(timeout=30)
            failed += 1
        else:
            assert fut.result(timeout=30).shape == (1, 10)
            served += 1
    assert (served, failed) == (6, 6) and "cpu1" in rt.dead_workers
    assert rt.drain(timeout_s=10) and rt.in_flight == 0
    rt.close(timeout_s=10)
    assert "cpu1 worker died" in capsys.readouterr().err
