"""Metrics of a run, simulated or real, and their mean and 95% confidence interval over seeds: the
statistics both drivers report (the runtime turns its records into the same :class:`RawRun`).

Definitions (the measured window is ``[warmup_s, duration_s)``; requests that
arrive during warm-up are not counted, and neither is busy time before it):

- **SLO violation rate**: the fraction of requests arriving in the window that
  miss their latency SLO (end-to-end latency, queueing, loads and transfers
  included, above the SLO in force when they arrived) *or* their accuracy SLO
  (the delivered accuracy of their route below ``min_accuracy``), as in the
  SparseLoom paper. A route of unknown accuracy does not violate the accuracy
  SLO; such requests are counted in ``accuracy_unknown``. A request still
  unfinished when the simulation stops violates.
- **dropped_rate**: the fraction of the window's requests that never completed:
  dropped by the policy (a deadline already passed or certain to be missed) or
  still unfinished when the simulation stopped. Every one of them violates.
  **shed_rate**: the part of it shed at arrival by the policy's admission
  (:mod:`scheduler.admission`).
- **throughput_rps**: requests completed inside the window per second of window.
- **latency_ms** p50/p95/p99 (and mean), overall and per task, over the
  window's *completed* requests (the others are in ``dropped_rate``, so no
  percentile is infinite); NaN when none completed.
- **mean_accuracy**: mean delivered accuracy over the window's requests whose
  route accuracy is known; ``None`` when none is.
- **peak_memory_mb**: the most block memory resident (or reserved by a load in
  progress) at any time of the run, warm-up included, since it is what the SoC
  must hold. **mean_memory_mb**: its time average over the window.
- **utilisation**: per processor, the fraction of the window it spent running
  blocks (time held waiting for a load is not counted).
- **task_switches**: how many times a processor started a block of a different
  task than its previous block, in the window. **variant_switches**: how many
  times an admitted request of a task arriving in the window was given a different stitched
  variant than the task's previous admitted request (summed over tasks; :class:`VariantSwitches`). **loads** / **load_ms**: block
  loads from storage and the storage time they took in the window;
  **evictions**: blocks evicted to make room.
- **decision_us** p50/p99: wall-clock time of each ``policy.decide`` call,
  measured with ``time.perf_counter_ns`` while simulating (all requests,
  warm-up included). **replan_ms**: wall-clock time of each re-plan.

In a simulated run, latencies, throughput, accuracy, memory and utilisation
are *modelled*: they come from the profile numbers in the problem; decision
and re-plan times are *measured* on the machine running the simulation. In a
runtime run every figure is measured on the host.

Intervals (:class:`Estimate`) are 95% percentile-bootstrap intervals, so they
never leave the range of what they estimate (a rate stays in [0, 1]): a rate
resamples the batches of all seeds' windows (``BATCHES`` per seed, by arrival
time; batch means absorb the autocorrelation of queues within a run), any other
figure resamples the seeds. The resampling stream is fixed, so the same runs
give the same interval on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScheduleLog:
    """What ran where and when (first ``until_ms`` of simulated time), for the Chrome trace."""

    until_ms: float
    processors: tuple[str, ...]
    tasks: tuple[str, ...]
    blocks: tuple[str, ...]
    # (processor index, request id, position, block id, start_ms, duration_ms)
    executions: list[tuple[int, int, int, int, float, float]] = field(
        default_factory=list
    )
    # (block id, start_ms, duration_ms)
    loads: list[tuple[int, float, float]] = field(default_factory=list)
    # (block id, time_ms)
    evictions: list[tuple[int, float]] = field(default_factory=list)
    # (time_ms, wall_us)
    replans: list[tuple[float, float]] = field(default_factory=list)
    request_task: list[int] = field(default_factory=list)


@dataclass
class RawRun:
    """The raw outcome of one engine run, turned into metrics by this module's :func:`run_result`."""

    task_names: tuple[str, ...]
    processors: tuple[str, ...]
    arrival_ms: list[float]
    arrival_task: list[int]
    done_ms: list[float]
    latency_slo_ms: list[float]
    accuracy: list[float | None]
    accuracy_violated: list[bool]
    decision_ns: list[int]
    replan_ns: list[int]
    busy_ms: list[float]
    memory_peak_mb: float
    memory_area_mb_ms: float
    loads: int
    load_ms: float
    evictions: int
    task_switches: int
    block_executions: int
    schedule: ScheduleLog | None
    # Per task: the arrival times of admitted requests given another stitched variant than the
    # task's previous admitted request (VariantSwitches); the metric counts those in the window.
    variant_switch_ms: tuple[tuple[float, ...], ...] = ()
    # Per request: shed at arrival by the policy's admission (scheduler.admission); never ran.
    shed: list[bool] = field(default_factory=list)



class VariantSwitches:
    """When each task's stitched variant changed, as both drivers record it: the arrival time of each
    admitted request given another variant than the task's previous admitted request."""

    __slots__ = ("at_ms", "last")

    def __init__(self, tasks: int) -> None:
        # Per task, the variant of its latest admitted request (a caller may skip ``see`` when equal).
        self.last: list[tuple[int, ...]] = [()] * tasks
        self.at_ms: list[list[float]] = [[] for _ in range(tasks)]

    def see(self, task: int, options: tuple[int, ...], now_ms: float) -> None:
        """An admitted request of ``task`` arriving at ``now_ms`` runs stitched variant ``options``."""
        last = self.last[task]
        if options != last:
            if last:
                self.at_ms[task].append(now_ms)
            self.last[task] = options


SOURCES: Mapping[str, str] = {
    "slo_violation_rate": "modelled",
    "dropped_rate": "modelled",
    "shed_rate": "modelled",
    "throughput_rps": "modelled",
    "latency_ms": "modelled",
    "mean_accuracy": "modelled",
    "peak_memory_mb": "modelled",
    "mean_memory_mb": "modelled",
    "utilisation": "modelled",
    "task_switches": "modelled",
    "variant_switches": "modelled",
    "load_ms": "modelled",
    "decision_us": "measured",
    "replan_ms": "measured",
}


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    mean: float


@dataclass(frozen=True)
class TaskMetrics:
    """One task's figures in the measured window."""

    task: str
    requests: int
    completed: int
    violations: int
    latency_violations: int
    accuracy_violations: int
    accuracy_unknown: int
    slo_violation_rate: float
    throughput_rps: float
    latency_ms: Percentiles
    mean_accuracy: float | None


@dataclass(frozen=True)
class RunResult:
    """Everything one (policy, seed) run gives; see the module docstring for definitions."""

    policy: str
    seed: int
    duration_s: float
    warmup_s: float
    requests: int
    completed: int
    slo_violation_rate: float
    dropped_rate: float
    shed_rate: float
    # (violations, requests) of each batch of the window, by arrival time (see ``BATCHES``).
    batches: tuple[tuple[int, int], ...]
    throughput_rps: float
    offered_rps: float
    latency_ms: Percentiles
    mean_accuracy: float | None
    accuracy_unknown: int
    peak_memory_mb: float
    mean_memory_mb: float
    utilisation: Mapping[str, float]
    task_switches: int
    variant_switches: int
    loads: int
    load_ms: float
    evictions: int
    decision_us_p50: float
    decision_us_p99: float
    decisions: int
    replan_ms: tuple[float, ...]
    block_executions: int
    sim_wall_s: float
    plan_wall_s: float
    per_task: Mapping[str, TaskMetrics]
    # Latencies (ms) of the window's requests per task, for CDF plots (inf = unfinished).
    latencies_ms: Mapping[str, np.ndarray]
    schedule: ScheduleLog | None = None


# Batches per seed for the batch-means intervals of rates: 10 keeps each batch over a second of
# a demo-length window (longer than the queues' memory) while giving the bootstrap enough units;
# tests/sparseloom/test_simulator.py checks the interval's coverage on independent runs.
BATCHES = 10


def _percentiles(lat: np.ndarray) -> Percentiles:
    """Percentiles of the completed requests' latencies (unfinished ones are counted as dropped)."""
    lat = lat[np.isfinite(lat)]
    if lat.size == 0:
        nan = float("nan")
        return Percentiles(nan, nan, nan, nan)
    p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99]))
    return Percentiles(p50, p95, p99, float(lat.mean()))


def _batches(arr: np.ndarray, violated: np.ndarray, start_ms: float, end_ms: float) -> tuple[tuple[int, int], ...]:
    edges = np.linspace(start_ms, end_ms, BATCHES + 1)
    which = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, BATCHES - 1)
    bad = np.bincount(which, weights=violated.astype(np.float64), minlength=BATCHES)
    n = np.bincount(which, minlength=BATCHES)
    return tuple((int(b), int(c)) for b, c in zip(bad, n))


def _mean_accuracy(acc: list[float | None]) -> tuple[float | None, int]:
    known = [a for a in acc if a is not None]
    return (float(np.mean(known)) if known else None), len(acc) - len(known)


def run_result(
    raw: RawRun,
    *,
    policy: str,
    seed: int,
    duration_s: float,
    warmup_s: float,
    sim_wall_s: float,
    plan_wall_s: float,
) -> RunResult:
    """Turn the engine's raw outcome into the metrics of the module docstring."""
    warm_ms, dur_ms = warmup_s * 1000.0, duration_s * 1000.0
    window_s = duration_s - warmup_s
    arr = np.asarray(raw.arrival_ms, dtype=np.float64)
    task = np.asarray(raw.arrival_task, dtype=np.int64)
    done = np.asarray(raw.done_ms, dtype=np.float64)
    slo = np.asarray(raw.latency_slo_ms, dtype=np.float64)
    acc_bad = np.asarray(raw.accuracy_violated, dtype=bool)
    in_window = (arr >= warm_ms) & (arr < dur_ms)
    finished_in_window = (done >= warm_ms) & (done < dur_ms)
    with np.errstate(invalid="ignore"):
        latency = done - arr
    lat_bad = ~(latency <= slo + 1e-9)  # inf and nan violate
    violated = lat_bad | acc_bad

    per_task: dict[str, TaskMetrics] = {}
    latencies: dict[str, np.ndarray] = {}
    for k, name in enumerate(raw.task_names):
        m = in_window & (task == k)
        idx = np.flatnonzero(m)
        n = int(idx.size)
        lat_k = latency[idx]
        mean_acc, unknown = _mean_accuracy([raw.accuracy[i] for i in idx])
        latencies[name] = lat_k
        per_task[name] = TaskMetrics(
            task=name,
            requests=n,
            completed=int(np.isfinite(lat_k).sum()),
            violations=int(violated[idx].sum()),
            latency_violations=int(lat_bad[idx].sum()),
            accuracy_violations=int(acc_bad[idx].sum()),
            accuracy_unknown=unknown,
            slo_violation_rate=float(violated[idx].mean()) if n else 0.0,
            throughput_rps=float((finished_in_window & (task == k)).sum() / window_s),
            latency_ms=_percentiles(lat_k),
            mean_accuracy=mean_acc,
        )
    idx = np.flatnonzero(in_window)
    mean_acc, unknown = _mean_accuracy([raw.accuracy[i] for i in idx])
    never = ~np.isfinite(latency[idx])
    dec = np.asarray(raw.decision_ns, dtype=np.float64) / 1000.0
    return RunResult(
        policy=policy,
        seed=seed,
        duration_s=duration_s,
        warmup_s=warmup_s,
        requests=int(idx.size),
        completed=int(np.isfinite(latency[idx]).sum()),
        slo_violation_rate=float(violated[idx].mean()) if idx.size else 0.0,
        dropped_rate=float(never.mean()) if idx.size else 0.0,
        shed_rate=float(np.asarray(raw.shed, dtype=bool)[idx].mean()) if idx.size and raw.shed else 0.0,
        batches=_batches(arr[idx], violated[idx], warm_ms, dur_ms),
        throughput_rps=float(finished_in_window.sum() / window_s),
        offered_rps=float(idx.size / window_s),
        latency_ms=_percentiles(latency[idx]),
        mean_accuracy=mean_acc,
        accuracy_unknown=unknown,
        peak_memory_mb=raw.memory_peak_mb,
        mean_memory_mb=raw.memory_area_mb_ms / (window_s * 1000.0),
        utilisation={
            p: raw.busy_ms[i] / (window_s * 1000.0)
            for i, p in enumerate(raw.processors)
        },
        task_switches=raw.task_switches,
        variant_switches=sum(1 for ts in raw.variant_switch_ms for t in ts if warm_ms <= t < dur_ms),
        loads=raw.loads,
        load_ms=raw.load_ms,
        evictions=raw.evictions,
        decision_us_p50=float(np.percentile(dec, 50)) if dec.size else float("nan"),
        decision_us_p99=float(np.percentile(dec, 99)) if dec.size else float("nan"),
        decisions=int(dec.size),
        replan_ms=tuple(ns / 1e6 for ns in raw.replan_ns),
        block_executions=raw.block_executions,
        sim_wall_s=sim_wall_s,
        plan_wall_s=plan_wall_s,
        per_task=per_task,
        latencies_ms=latencies,
        schedule=raw.schedule,
    )


@dataclass(frozen=True)
class Estimate:
    """A figure over seeds: its mean and a 95% interval [low, high] (None with too little data)."""

    mean: float
    interval: tuple[float, float] | None
    values: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.mean if self.interval is None else self.interval[0]

    @property
    def high(self) -> float:
        return self.mean if self.interval is None else self.interval[1]

    @property
    def ci95(self) -> float | None:
        """Half the interval's width (it need not be symmetric about the mean)."""
        return None if self.interval is None else (self.interval[1] - self.interval[0]) / 2.0


# Bootstrap resamples: 2000 put the 2.5% and 97.5% quantiles within about 1% of their limit.
RESAMPLES = 2000


def _bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int) -> tuple[float, float]:
    rng = np.random.default_rng(20261201)  # fixed: the same runs give the same interval everywhere
    draws = stat(rng.integers(0, n, size=(RESAMPLES, n)))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def estimate(values: Sequence[float]) -> Estimate:
    """Mean over seeds with a percentile-bootstrap 95% interval over the seeds (within the values'
    range); non-finite values give a non-finite mean and no interval."""
    vals = tuple(float(v) for v in values)
    arr = np.asarray(vals, dtype=np.float64)
    if arr.size == 0:
        return Estimate(float("nan"), None, vals)
    mean = float(arr.mean())
    if arr.size < 2 or not np.all(np.isfinite(arr)):
        return Estimate(mean, None, vals)
    return Estimate(mean, _bootstrap(lambda idx: arr[idx].mean(axis=1), arr.size), vals)


def estimate_rate(runs: Sequence[RunResult], per_seed: Sequence[float]) -> Estimate:
    """A rate over seeds: the mean of the seeds' rates, with a batch-means bootstrap interval over all
    seeds' batches (a resampled ratio of counts, so it stays in [0, 1])."""
    vals = tuple(float(v) for v in per_seed)
    mean = float(np.mean(vals)) if vals else float("nan")
    cells = np.asarray([b for r in runs for b in r.batches if b[1] > 0], dtype=np.float64).reshape(-1, 2)
    if cells.shape[0] < 2:
        return Estimate(mean, None, vals)
    bad, n = cells[:, 0], cells[:, 1]
    lo, hi = _bootstrap(lambda idx: bad[idx].sum(axis=1) / n[idx].sum(axis=1), cells.shape[0])
    return Estimate(mean, (min(lo, mean), max(hi, mean)), vals)


@dataclass(frozen=True)
class PolicySummary:
    """One policy's figures over all seeds."""

    policy: str
    runs: tuple[RunResult, ...]
    slo_violation_rate: Estimate
    dropped_rate: Estimate
    shed_rate: Estimate
    throughput_rps: Estimate
    latency_p50_ms: Estimate
    latency_p95_ms: Estimate
    latency_p99_ms: Estimate
    mean_accuracy: Estimate | None
    peak_memory_mb: Estimate
    mean_memory_mb: Estimate
    utilisation: Mapping[str, Estimate]
    task_switches: Estimate
    variant_switches: Estimate
    load_ms: Estimate
    decision_us_p50: float
    decision_us_p99: float
    per_task_violation_rate: Mapping[str, Estimate]
    per_task_latency_p99_ms: Mapping[str, Estimate]
    per_task_throughput_rps: Mapping[str, Estimate]


def summarise(policy: str, runs: Sequence[RunResult]) -> PolicySummary:
    """Aggregate one policy's runs (one per seed). Decision percentiles pool every seed's calls."""
    if not runs:
        raise ValueError(f"no runs to summarise for policy '{policy}'")
    accs = [r.mean_accuracy for r in runs]
    tasks = list(runs[0].per_task)
    procs = list(runs[0].utilisation)
    return PolicySummary(
        policy=policy,
        runs=tuple(runs),
        slo_violation_rate=estimate_rate(runs, [r.slo_violation_rate for r in runs]),
        dropped_rate=estimate([r.dropped_rate for r in runs]),
        shed_rate=estimate([r.shed_rate for r in runs]),
        throughput_rps=estimate([r.throughput_rps for r in runs]),
        latency_p50_ms=estimate([r.latency_ms.p50 for r in runs]),
        latency_p95_ms=estimate([r.latency_ms.p95 for r in runs]),
        latency_p99_ms=estimate([r.latency_ms.p99 for r in runs]),
        mean_accuracy=None
        if any(a is None for a in accs)
        else estimate([a for a in accs if a is not None]),
        peak_memory_mb=estimate([r.peak_memory_mb for r in runs]),
        mean_memory_mb=estimate([r.mean_memory_mb for r in runs]),
        utilisation={p: estimate([r.utilisation[p] for r in runs]) for p in procs},
        task_switches=estimate([r.task_switches for r in runs]),
        variant_switches=estimate([r.variant_switches for r in runs]),
        load_ms=estimate([r.load_ms for r in runs]),
        # Over seeds: the median of the per-seed medians, and the worst per-seed p99.
        decision_us_p50=float(np.median([r.decision_us_p50 for r in runs])),
        decision_us_p99=float(np.max([r.decision_us_p99 for r in runs])),
        per_task_violation_rate={
            t: estimate([r.per_task[t].slo_violation_rate for r in runs]) for t in tasks
        },
        per_task_latency_p99_ms={
            t: estimate([r.per_task[t].latency_ms.p99 for r in runs]) for t in tasks
        },
        per_task_throughput_rps={
            t: estimate([r.per_task[t].throughput_rps for r in runs]) for t in tasks
        },
    )
