"""Run the simulator: one run, every policy on the same arrivals over several seeds, a load sweep.

All policies of a comparison see exactly the same arrivals per seed: they are
generated once per seed, before any policy runs. Each policy plans once (its
plan wall time is recorded) and that plan starts every seed's run.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scheduler.bounds import fastest_accurate_ms
from scheduler.plan import Plan
from scheduler.policy import Policy
from scheduler.problem import Problem
from sparseloom.arrivals import active_windows, generate_arrivals, within
from sparseloom.sim import engine
from sparseloom.core.overload import Overload
from sparseloom.core.slo import SLOChangeEvent
from sparseloom.sim.experiment import Experiment, ProfileError
from sparseloom.sim.wake import Wake
from sparseloom.core.metrics import PolicySummary, RunResult, run_result, summarise
from sparseloom.sim.parallel import PROCESS, Engine, map_jobs
from sparseloom.workload import Arrival, Task, Transitions, Workload

# Simulated time a re-plan takes per unit of solver work (``SolveInfo.work``: ILP variables +
# simplex iterations + B&B nodes). Wall time would make the modelled table depend on the machine;
# work does not. Fitted on this project's 2-core reference host (see README, "Re-plans cost time"):
# 90 plans of synthetic problems (2-4 tasks, 3-5 variants, 3-4 processors) by sparseloom, av-p and
# av-np took a median 0.37 ms of wall time per unit of work (p10 0.09, p90 0.58; correlation of
# work and wall time 0.93). A policy that keeps its plan (SV, Band) does no work and waits for nothing.
REPLAN_MS_PER_WORK = 0.37


def replan_delay_ms(plan: Plan) -> float:
    """Modelled time from an SLO change until the re-planned ``plan`` serves."""
    return plan.info.work * REPLAN_MS_PER_WORK


@dataclass(frozen=True)
class Arrivals:
    """The arrival times (ms, sorted) of each task for one seed."""

    seed: int
    duration_s: float
    times_ms: Mapping[str, np.ndarray]

    def merged(self, task_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All arrivals in time order, with the index (in ``task_names``) of each one's task."""
        missing = [n for n in task_names if n not in self.times_ms]
        if missing:
            raise ValueError(f"no arrivals given for task(s) {', '.join(missing)}")
        times = [np.asarray(self.times_ms[n], dtype=np.float64) for n in task_names]
        tasks = [np.full(t.size, k, dtype=np.int64) for k, t in enumerate(times)]
        all_t = np.concatenate(times) if times else np.empty(0)
        all_k = np.concatenate(tasks) if tasks else np.empty(0, dtype=np.int64)
        order = np.argsort(all_t, kind="stable")
        return all_t[order], all_k[order]

    @property
    def count(self) -> int:
        return sum(int(t.size) for t in self.times_ms.values())


def make_arrivals(
    specs: Mapping[str, Arrival],
    duration_s: float,
    seed: int,
    *,
    rate_scale: float = 1.0,
    base_dir: str | Path = ".",
    transitions: Transitions | None = None,
) -> Arrivals:
    """Generate every task's arrivals for one seed.

    Each task draws from its own stream, keyed by the seed and the task's
    name, so adding a task leaves the others' arrivals unchanged.
    """
    times: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        times[name] = generate_arrivals(
            spec, duration_s, rng, rate_scale=rate_scale, base_dir=base_dir
        )
    if transitions is not None:
        rng = np.random.default_rng([seed, zlib.crc32(b"transitions")])
        windows = active_windows(transitions, list(specs), duration_s, rng)
        times = {n: within(t, windows[n]) for n, t in times.items()}
    return Arrivals(seed, duration_s, times)


def arrival_specs(tasks: Sequence[Task]) -> dict[str, Arrival]:
    """The arrival process of each workload task, by task name."""
    return {t.name: t.arrival for t in tasks}


def simulate(
    problem: Problem,
    policy: Policy,
    arrivals: Arrivals,
    *,
    warmup_s: float = 0.0,
    slo_changes: Sequence[SLOChangeEvent] = (),
    plan: Plan | None = None,
    trace_until_s: float = 0.0,
    prefetch: bool = True,
    latency_cv: float = 0.0,
    profile_error: ProfileError | None = None,
    wake: Sequence[Wake | None] = (),
    overload: Overload | None = None,
) -> RunResult:
    """Simulate one policy on one seed's arrivals (plans first unless ``plan`` is given).

    ``prefetch``: load a request's missing blocks when it is dispatched;
    ``latency_cv``: lognormal spread of each block execution's latency around
    the profile's value, drawn from a stream keyed by the arrivals' seed (see
    :func:`sparseloom.sim.engine.run`); ``wake``: each task's first-block cost by idle gap, its
    levels drawn from another stream keyed by the seed; ``overload``: the runtime's limits at arrival.
    """
    duration_s = arrivals.duration_s
    if not 0.0 <= warmup_s < duration_s:
        raise ValueError(
            f"warmup_s ({warmup_s:g}) must be in [0, duration_s={duration_s:g})"
        )
    plan_wall_s = 0.0
    if plan is None:
        t0 = time.perf_counter()
        plan = policy.plan(problem)
        plan_wall_s = time.perf_counter() - t0
    times, tasks = arrivals.merged([t.name for t in problem.tasks])
    t0 = time.perf_counter()
    raw = engine.run(
        problem,
        policy,
        plan,
        times,
        tasks,
        duration_ms=duration_s * 1000.0,
        warmup_ms=warmup_s * 1000.0,
        slo_changes=slo_changes,
        trace_until_ms=trace_until_s * 1000.0,
        prefetch=prefetch,
        latency_cv=latency_cv,
        latency_rng=np.random.default_rng([arrivals.seed, zlib.crc32(b"latency")]),
        replan_delay_ms=replan_delay_ms,
        truth_scale=profile_error.scale if profile_error else 1.0,
        block_error=profile_error.block_factors(problem) if profile_error else None,
        wake=wake,
        wake_rng=np.random.default_rng([arrivals.seed, zlib.crc32(b"wake")]),
        overload=overload,
    )
    wall = time.perf_counter() - t0
    return run_result(
        raw,
        policy=policy.name,
        seed=arrivals.seed,
        duration_s=duration_s,
        warmup_s=warmup_s,
        sim_wall_s=wall,
        plan_wall_s=plan_wall_s,
    )


@dataclass(frozen=True)
class _RunJob:
    """One policy on one seed's arrivals, as sent to a worker process."""

    problem: Problem
    policy: Policy
    arrivals: Arrivals
    experiment: Experiment
    plan: Plan
    trace_until_s: float


def _simulate_job(job: _RunJob) -> RunResult:
    return simulate_in(job.experiment, job.problem, job.policy, job.arrivals, plan=job.plan, trace_until_s=job.trace_until_s)


def simulate_in(
    experiment: Experiment, problem: Problem, policy: Policy, arrivals: Arrivals, *, plan: Plan | None = None,
    trace_until_s: float = 0.0,
) -> RunResult:
    """:func:`simulate` with the experiment's warm-up, SLO changes, latency spread and profile error."""
    return simulate(problem, policy, arrivals, warmup_s=experiment.warmup_s, slo_changes=experiment.slo_changes, plan=plan,
                    trace_until_s=trace_until_s, latency_cv=experiment.latency_cv, profile_error=experiment.profile_error,
                    wake=experiment.wake_curves(problem), overload=experiment.overload)


def arrivals_in(experiment: Experiment, specs: Mapping[str, Arrival], seed: int, rate_scale: float = 1.0) -> Arrivals:
    """One seed's arrivals of the experiment, at its rate scale x ``rate_scale``."""
    return make_arrivals(specs, experiment.duration_s, seed, rate_scale=experiment.rate_scale * rate_scale,
                         base_dir=experiment.base_dir, transitions=experiment.transitions)


# Below this many simulated requests in all, starting worker processes costs more than it saves.
_PARALLEL_MIN_REQUESTS = 200_000


def _workers(workers: int | None, jobs: Sequence[_RunJob]) -> int:
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return min(workers, len(jobs))
    if sum(j.arrivals.count for j in jobs) < _PARALLEL_MIN_REQUESTS:
        return 1
    return min(len(jobs), len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class Comparison:
    """Every policy on the same arrivals, over the same seeds: the experiment's settings, whole."""

    experiment: Experiment
    policies: Mapping[str, PolicySummary]
    plans: Mapping[str, Plan]
    plan_wall_s: Mapping[str, float]
    # Per seed, the fraction of the window's requests every policy misses (:func:`unavoidable_rate`).
    unavoidable: tuple[float, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.experiment.duration_s

    @property
    def warmup_s(self) -> float:
        return self.experiment.warmup_s

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.experiment.seed_list

    @property
    def rate_scale(self) -> float:
        return self.experiment.rate_scale

    @property
    def slo_changes(self) -> tuple[SLOChangeEvent, ...]:
        return self.experiment.slo_changes

    @property
    def unavoidable_rate(self) -> float:
        """Mean over seeds of the violations no policy can avoid: a floor under every policy's rate."""
        return float(np.mean(self.unavoidable)) if self.unavoidable else 0.0


def unavoidable_rate(problem: Problem, arrivals: Arrivals, experiment: Experiment) -> float:
    """The fraction of the window's requests whose latency SLO, in force at arrival (the experiment's
    SLO changes), is below their task's fastest accurate variant
    (:func:`scheduler.bounds.fastest_accurate_ms`, on the truth's latencies, the experiment's profile
    error): they miss under every policy, so no comparison can credit or blame a policy for them."""
    warmup_s, changes = experiment.warmup_s, experiment.slo_changes
    error = experiment.profile_error or ProfileError()
    factors = error.block_factors(problem)
    # Per-block factors are drawn per digest; the least of them keeps the bound a bound.
    scale = error.scale * (min(factors) if factors else 1.0)
    total = missed = 0
    for task in problem.tasks:
        times = np.asarray(arrivals.times_ms.get(task.name, ()), dtype=np.float64)
        times = times[times >= warmup_s * 1000.0]
        total += int(times.size)
        # Each stretch between the task's SLO changes has one SLO, so one bound.
        own = sorted((c for c in changes if c.task == task.name), key=lambda c: c.at_ms)
        spec, start = task, 0.0
        for k in range(len(own) + 1):
            end = own[k].at_ms if k < len(own) else math.inf
            fastest = fastest_accurate_ms(spec)
            if fastest is None or fastest * scale > spec.latency_slo_ms:
                missed += int(np.count_nonzero((times >= start) & (times < end)))
            if k < len(own):
                spec, start = own[k].apply(spec), end
    return missed / total if total else 0.0


def compare(
    problem: Problem,
    policies: Sequence[Policy],
    specs: Mapping[str, Arrival],
    experiment: Experiment,
    *,
    trace_until_s: float = 0.0,
    progress: bool = True,
    workers: int | None = None,
    engine: Engine = PROCESS,
    verdict: Callable[[Mapping[str, Plan]], Problem] | None = None,
) -> Comparison:
    """Run every policy on the experiment's seeds; the schedule log is kept for the first seed.

    ``verdict``: given every policy's plan, the problem to simulate them on (the same numbers, with
    the accuracy of every variant the plans may serve measured: :func:`sparseloom.verdict.measure_served`).

    ``workers``: processes running (policy, seed) pairs side by side; by default the CPUs available
    when the runs are big enough to pay for starting processes, else 1 (this process).
    """
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    plans: dict[str, Plan] = {}
    plan_wall: dict[str, float] = {}

    def plan_all(on: Problem) -> None:
        for policy in policies:
            t0 = time.perf_counter()
            plans[policy.name] = policy.plan(on)
            plan_wall[policy.name] = time.perf_counter() - t0

    plan_all(problem)
    if verdict is not None:
        problem = judge(problem, policies, plans, experiment.slo_changes, verdict, plan_all)
    seed_list = experiment.seed_list
    jobs: list[_RunJob] = []
    floors: list[float] = []
    for s in seed_list:
        arrivals = arrivals_in(experiment, specs, s)
        floors.append(unavoidable_rate(problem, arrivals, experiment))
        for policy in policies:
            jobs.append(_RunJob(problem, policy, arrivals, experiment, plans[policy.name],
                                trace_until_s if s == seed_list[0] else 0.0))
    bar = tqdm(
        total=len(jobs),
        desc="simulate",
        unit="run",
        disable=not progress,
        leave=False,
    )
    results = map_jobs(_simulate_job, jobs, _workers(workers, jobs), bar, engine)
    runs: dict[str, list[RunResult]] = {n: [] for n in names}
    for res in results:
        runs[res.policy].append(replace(res, plan_wall_s=plan_wall[res.policy]))
    bar.close()
    return Comparison(
        experiment=experiment,
        policies={n: summarise(n, runs[n]) for n in names},
        plans=plans,
        plan_wall_s=plan_wall,
        unavoidable=tuple(floors),
    )


def compare_workload(
    workload: Workload,
    problem: Problem,
    policies: Sequence[Policy],
    *,
    base_dir: str | Path = ".",
    rate_scale: float = 1.0,
    trace_until_s: float = 0.0,
    latency_cv: float = 0.0,
    progress: bool = True,
    workers: int | None = None,
    engine: Engine = PROCESS,
    verdict: Callable[[Mapping[str, Plan]], Problem] | None = None,
    profile_error: ProfileError | None = None,
) -> Comparison:
    """:func:`compare` with arrivals, SLO changes, transitions, duration, warm-up and seeds from a workload.

    ``problem`` must hold the workload's tasks (by name); ``base_dir`` is
    where trace files are resolved (the workload file's folder).
    """
    names = {t.name for t in problem.tasks}
    missing = [t.name for t in workload.tasks if t.name not in names]
    if missing:
        raise ValueError(
            f"the problem lacks the workload's task(s) {', '.join(missing)}"
        )
    tasks = [t for t in workload.tasks if t.name in names]
    experiment = replace(Experiment.of_workload(workload, base_dir, names), rate_scale=rate_scale, latency_cv=latency_cv,
                         profile_error=profile_error)
    return compare(problem, policies, arrival_specs(tasks), experiment, trace_until_s=trace_until_s, progress=progress,
                   workers=workers, engine=engine, verdict=verdict)


# Rounds of measure-then-re-plan before a run (see ``judge``): the first measures what the plans
# serve, the second re-plans where a measurement refuted a planned variant, the third catches a
# variant the second picked that is refuted in turn. Each round costs a re-plan of every policy;
# variants a last round still changes to are judged on the estimate (the report says how many).
VERDICT_ROUNDS = 3


def judge(problem: Problem, policies: Sequence[Policy], plans: dict[str, Plan],
           slo_changes: Sequence[SLOChangeEvent], verdict: Callable[[Mapping[str, Plan]], Problem],
           plan_all: Callable[[Problem], None]) -> Problem:
    """Measure every variant any plan may serve, including the plans each SLO change's re-plan will
    make; where a measurement refutes a planned variant (below its accuracy SLO: the ILP then cuts
    it off), every policy plans again on the measured numbers. Returns the problem the run is
    judged on. Every policy goes through the same rounds."""
    judged = problem
    for _ in range(VERDICT_ROUNDS):
        served: dict[str, Plan] = dict(plans)
        for policy in policies:
            tasks = list(judged.tasks)
            current = plans[policy.name]
            for i, ch in enumerate(sorted(slo_changes, key=lambda c: c.at_ms)):
                k = next((j for j, t in enumerate(tasks) if t.name == ch.task), None)
                if k is None:
                    continue
                tasks[k] = ch.apply(tasks[k])
                current = policy.replan(replace(judged, tasks=tuple(tasks)), current)
                served[f"{policy.name}@{i}"] = current
        judged = verdict(served)
        before = _placements(plans)
        plan_all(judged)
        if _placements(plans) == before:
            break
    return judged


def _placements(plans: Mapping[str, Plan]) -> dict[str, dict[str, tuple[tuple[int, ...], tuple[str, ...]]]]:
    """Each policy's planned variant and processors per task (what a re-plan may change)."""
    return {n: {t: (r.options, r.processors) for t, r in p.routes.items()} for n, p in plans.items()}


def scale_rates(problem: Problem, rate_scale: float) -> Problem:
    """The problem with every task's expected arrival rate multiplied, so policies plan for the load."""
    return replace(
        problem,
        tasks=tuple(replace(t, rate_hz=t.rate_hz * rate_scale,
                            sustained_rate_hz=None if t.sustained_rate_hz is None else t.sustained_rate_hz * rate_scale)
                    for t in problem.tasks),
    )
