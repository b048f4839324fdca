"""Live statistics of a real run, computed with the simulator's metric definitions.

Every request's arrival, completion (or rejection), SLO in force and route
accuracy is recorded; :meth:`Recorder.raw` turns them into the simulator's
:class:`~sparseloom.core.metrics.RawRun`, so :func:`sparseloom.core.metrics.run_result`
computes the runtime's metrics exactly as it computes the simulator's. All
figures here are *measured* on this host (wall-clock time, real outputs).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sparseloom.core.metrics import Percentiles, RawRun, RunResult, VariantSwitches, run_result


@dataclass(frozen=True)
class TaskStats:
    """One task's live figures: requests that arrived and are finished (done or rejected)."""

    task: str
    requests: int
    completed: int
    rejected: int
    in_flight: int
    violations: int
    slo_violation_rate: float
    throughput_rps: float
    latency_ms: Percentiles
    mean_accuracy: float | None
    latency_slo_ms: float
    min_accuracy: float
    # The stitched variant of the latest request: the variant of each block, and where each ran.
    variant: tuple[str, ...]
    processors: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeStats:
    """A snapshot of a running runtime (``source`` is "measured": wall clock, real outputs)."""

    uptime_s: float
    requests: int
    completed: int
    rejected: int
    errors: int
    in_flight: int
    slo_violation_rate: float
    throughput_rps: float
    latency_ms: Percentiles
    per_task: Mapping[str, TaskStats]
    memory_budget_mb: float
    resident_mb: float
    peak_resident_mb: float
    resident_blocks: int
    rss_mb: float
    peak_rss_mb: float
    loads: int
    evictions: int
    utilisation: Mapping[str, float]
    policy: str
    replans: int
    source: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (non-finite numbers as null)."""
        return _finite(asdict(self))

    def describe(self) -> str:
        """A few lines for a terminal."""
        lines = [
            (f"t={self.uptime_s:6.1f}s  requests {self.requests}  done {self.completed}  rejected {self.rejected}  "
            f"errors {self.errors}  in flight {self.in_flight}  throughput {self.throughput_rps:.1f}/s  "
            f"violations {self.slo_violation_rate:.1%}"),
            (f"  memory: blocks {self.resident_mb:.2f}/{self.memory_budget_mb:.2f} MB (peak {self.peak_resident_mb:.2f}, "
            f"{self.resident_blocks} blocks), RSS {self.rss_mb:.0f} MB (peak {self.peak_rss_mb:.0f}); "
            f"loads {self.loads}, evictions {self.evictions}; policy {self.policy}, re-plans {self.replans}"),
        ]
        for t in self.per_task.values():
            lat = t.latency_ms
            lines.append(
                f"  {t.task}: p50 {lat.p50:.2f} ms  p99 {lat.p99:.2f} ms  (SLO {t.latency_slo_ms:g} ms)  "
                f"violations {t.slo_violation_rate:.1%}  {t.throughput_rps:.1f}/s  variant {'+'.join(t.variant) or '-'}"
            )
        return "\n".join(lines)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# Service-time samples kept per (block, processor) for calibration.
SAMPLES_PER_BLOCK = 4096

# A finished request, for the simulator's wake model: (task index, idle gap of its first block's
# worker before it (ms), warm (that worker last ran the same task), ms from when that worker took it
# to the start of its last block, ms from that start to its end, its blocks' digests). A request
# dropped by a late check (before its first block or a later one): the check's time stands for its
# last block's start, its digests end at that block, and its finish cost is NaN (never measured).
WakeSample = tuple[int, float, bool, float, float, tuple[str, ...]]
# What the runtime hands the recorder for one: (idle gap, warm, when the worker took the request,
# when its last block started or the check dropped it, its blocks' digests up to that one).
Woke = tuple[float, bool, float, float, tuple[str, ...]]


# Per-request records kept for statistics; older finished ones are dropped beyond this.
MAX_RECORDS = 200_000


class Recorder:
    """Per-request records of a run, safe to append to from several threads.

    Memory stays bounded: beyond ``max_records`` the oldest finished records are
    dropped (statistics then cover the most recent requests); totals per task
    count every request.
    """

    def __init__(self, tasks: Sequence[str], processors: Sequence[str], max_records: int = MAX_RECORDS) -> None:
        if max_records < 2:
            raise ValueError(f"max_records must be >= 2, got {max_records}")
        self.tasks = tuple(tasks)
        self.processors = tuple(processors)
        self.max_records = max_records
        self._lock = threading.Lock()
        self._base = 0  # request id of the first kept record
        self.dropped = 0
        self.total_requests = [0] * len(self.tasks)
        self.total_rejected = [0] * len(self.tasks)
        self.arrival_ms: list[float] = []
        self.task: list[int] = []
        self.done_ms: list[float] = []
        self.finished: list[bool] = []
        self.rejected: list[bool] = []
        self.slo_ms: list[float] = []
        self.accuracy: list[float | None] = []
        self.accuracy_violated: list[bool] = []
        self.decision_ns: deque[int] = deque(maxlen=max_records)
        self.replan_ns: list[int] = []
        self.busy_ms = [0.0] * len(processors)
        self.block_executions = 0
        self.task_switches = 0
        self.variants = VariantSwitches(len(tasks))
        self.errors = 0
        self._last_task = [-1] * len(processors)
        # Per (digest, processor): measured block run times (ms). Per finished request: what the
        # runtime added to its blocks' run times (decision, admission, worker wake-ups and queueing),
        # and its latency over the plan's expected block latencies (the profile's).
        self.service_ms: dict[tuple[str, str], deque[float]] = {}
        self.overhead_ms: deque[float] = deque(maxlen=SAMPLES_PER_BLOCK)
        self.excess_ms: deque[float] = deque(maxlen=SAMPLES_PER_BLOCK)
        # For the simulator's wake model: per finished request, and per request dropped by a late check.
        self.wake_ms: deque[WakeSample] = deque(maxlen=SAMPLES_PER_BLOCK)
        self.wakes = 0  # wake samples taken, all of the run
        # Every block run since tap() began one, as ((digest, processor), ms); None while not tapped.
        self._tap: list[tuple[tuple[str, str], float]] | None = None
        self.completions = 0
        self._mem_mb = 0.0
        self._mem_last_ms = 0.0
        self.memory_area_mb_ms = 0.0

    def arrive(self, now_ms: float, task: int, slo_ms: float, accuracy: float | None, acc_bad: bool, decision_ns: int) -> int:
        with self._lock:
            if len(self.arrival_ms) >= self.max_records:
                self._compact()
            rid = self._base + len(self.arrival_ms)
            self.total_requests[task] += 1
            self.arrival_ms.append(now_ms)
            self.task.append(task)
            self.done_ms.append(float("inf"))
            self.finished.append(False)
            self.rejected.append(False)
            self.slo_ms.append(slo_ms)
            self.accuracy.append(accuracy)
            self.accuracy_violated.append(acc_bad)
            self.decision_ns.append(decision_ns)
            return rid

    def _compact(self) -> None:
        """Drop the oldest half of the records, up to the first one still in flight."""
        n = 0
        limit = len(self.arrival_ms) // 2
        while n < limit and self.finished[n]:
            n += 1
        if n == 0:
            return
        for records in (self.arrival_ms, self.task, self.done_ms, self.finished, self.rejected, self.slo_ms,
                        self.accuracy, self.accuracy_violated):
            del records[:n]
        self._base += n
        self.dropped += n

    def done(self, rid: int, now_ms: float, run_ms: float, expected_ms: float,
             woke: Woke | None = None) -> None:
        """Request ``rid`` finished; ``woke``: its first block's worker (idle gap, warm, when it took
        it), when its last block started, and its blocks' digests."""
        with self._lock:
            i = rid - self._base
            self.done_ms[i] = now_ms
            self.finished[i] = True
            self.overhead_ms.append(now_ms - self.arrival_ms[i] - run_ms)
            self.excess_ms.append(now_ms - self.arrival_ms[i] - expected_ms)
            if woke is not None:
                gap, warm, taken, last_start, digests = woke
                self.wake_ms.append((self.task[i], gap, warm, last_start - taken, now_ms - last_start, digests))
                self.wakes += 1
            self.completions += 1

    def reject(self, rid: int, error: bool = False,
               woke: Woke | None = None) -> None:
        """Request ``rid`` was dropped or failed; ``woke`` as in :meth:`done`, with the time of the
        late check that dropped it for its last block's start and the blocks up to that one: a wake
        sample with no finish cost (NaN)."""
        with self._lock:
            i = rid - self._base
            if woke is not None:
                gap, warm, taken, checked, digests = woke
                self.wake_ms.append((self.task[i], gap, warm, checked - taken, math.nan, digests))
                self.wakes += 1
            self.total_rejected[self.task[i]] += 1
            self.finished[i] = True
            self.rejected[i] = True
            if error:
                self.errors += 1

    def variant(self, task: int, options: tuple[int, ...], now_ms: float) -> None:
        """An admitted request of ``task`` arriving at ``now_ms`` runs stitched variant ``options``."""
        with self._lock:
            self.variants.see(task, options, now_ms)

    def executed(self, proc: int, task: int, ms: float, digest: str) -> None:
        with self._lock:
            key = (digest, self.processors[proc])
            samples = self.service_ms.get(key)
            if samples is None:
                samples = self.service_ms[key] = deque(maxlen=SAMPLES_PER_BLOCK)
            samples.append(ms)
            if self._tap is not None:
                self._tap.append((key, ms))
            self.busy_ms[proc] += ms
            self.block_executions += 1
            if self._last_task[proc] not in (-1, task):
                self.task_switches += 1
            self._last_task[proc] = task

    def memory(self, now_ms: float, delta_mb: float) -> None:
        with self._lock:
            self.memory_area_mb_ms += self._mem_mb * (now_ms - self._mem_last_ms)
            self._mem_last_ms = now_ms
            self._mem_mb += delta_mb

    def restart_clock(self) -> None:
        """Time zero is now: memory resident so far counts from here."""
        with self._lock:
            self._mem_last_ms = 0.0
            self.memory_area_mb_ms = 0.0

    def raw(
        self,
        *,
        finished_only: bool,
        peak_mb: float,
        loads: int,
        load_ms: float,
        evictions: int,
        origin_ms: float = 0.0,
    ) -> RawRun:
        """The records as the simulator's raw run, times counted from ``origin_ms``;
        ``finished_only`` leaves out requests still in flight."""
        with self._lock:
            keep = [i for i, f in enumerate(self.finished) if f or not finished_only]
            return RawRun(
                task_names=self.tasks,
                processors=self.processors,
                arrival_ms=[self.arrival_ms[i] - origin_ms for i in keep],
                arrival_task=[self.task[i] for i in keep],
                done_ms=[self.done_ms[i] - origin_ms for i in keep],
                latency_slo_ms=[self.slo_ms[i] for i in keep],
                accuracy=[self.accuracy[i] for i in keep],
                accuracy_violated=[self.accuracy_violated[i] for i in keep],
                decision_ns=list(self.decision_ns),
                replan_ns=list(self.replan_ns),
                busy_ms=list(self.busy_ms),
                memory_peak_mb=peak_mb,
                memory_area_mb_ms=self.memory_area_mb_ms,
                loads=loads,
                load_ms=load_ms,
                evictions=evictions,
                task_switches=self.task_switches,
                block_executions=self.block_executions,
                schedule=None,
                variant_switch_ms=tuple(tuple(t - origin_ms for t in ts) for ts in self.variants.at_ms),
            )

    def tap(self) -> None:
        """Start keeping every block run (see :meth:`untap`)."""
        with self._lock:
            self._tap = []

    def untap(self) -> list[tuple[tuple[str, str], float]]:
        """The block runs since :meth:`tap`, as ((digest, processor), ms); stops keeping them."""
        with self._lock:
            out, self._tap = self._tap or [], None
        return out

    def service_times_ms(self) -> dict[tuple[str, str], tuple[float, float, float, int]]:
        """Per (digest, processor): mean, p50 and p90 of the measured run times (ms), and the sample count."""
        out: dict[tuple[str, str], tuple[float, float, float, int]] = {}
        with self._lock:
            for k, v in self.service_ms.items():
                if v:
                    p50, p90 = (float(q) for q in np.percentile(v, [50, 90]))
                    out[k] = (float(np.mean(v)), p50, p90, len(v))
        return out

    def service_sigma(self) -> float:
        """Log-space spread of block run times: per block sqrt(2 ln(mean / p50)), weighted by samples.

        A lognormal with a block's measured mean and this spread has the block's measured median:
        the simulator then keeps both the busy time (mean) and the typical run (median). Rare long
        runs (other processes preempting the worker) make the measured tail heavier than that.
        """
        pairs = [(math.sqrt(2.0 * math.log(mean / p50)) if mean > p50 > 0 else 0.0, n)
                 for mean, p50, _, n in self.service_times_ms().values() if n > 1]
        total = sum(n for _, n in pairs)
        return sum(sg * n for sg, n in pairs) / total if total else 0.0

    def wake_samples(self, since: int = 0) -> list[WakeSample]:
        """The wake samples after the first ``since`` (see :attr:`wakes`), oldest first, at most the
        latest 4096: one per completed request, and one per request dropped by a late check (see
        :data:`WakeSample`)."""
        with self._lock:
            n = min(self.wakes - since, len(self.wake_ms))
            return list(self.wake_ms)[len(self.wake_ms) - n:] if n > 0 else []

    def overheads_ms(self, since: int = 0, over: str = "run") -> list[float]:
        """Each request completed after the first ``since`` (see :attr:`completions`), oldest first, at
        most the latest 4096: its latency minus its blocks' measured run times (``over="run"``) or
        minus their expected latencies in the plan (``over="expected"``)."""
        samples = self.overhead_ms if over == "run" else self.excess_ms
        with self._lock:
            n = min(self.completions - since, len(samples))
            return list(samples)[len(samples) - n:] if n > 0 else []

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per task: requests and rejected (all of the run), and still in flight."""
        with self._lock:
            task = np.asarray(self.task, dtype=np.int64)
            fin = np.asarray(self.finished, dtype=bool)
            total = np.asarray(self.total_requests, dtype=np.int64)
            rejected = np.asarray(self.total_rejected, dtype=np.int64)
        return total, rejected, np.bincount(task[~fin], minlength=len(self.tasks))


def result(
    raw: RawRun, *, policy: str, seed: int, duration_s: float, warmup_s: float, wall_s: float, plan_wall_s: float
) -> RunResult:
    """The simulator's metrics of a real run (same definitions, same shape)."""
    return run_result(
        raw,
        policy=policy,
        seed=seed,
        duration_s=duration_s,
        warmup_s=warmup_s,
        sim_wall_s=wall_s,
        plan_wall_s=plan_wall_s,
    )


def result_dict(r: RunResult, source: str) -> dict[str, Any]:
    """The headline figures of a run result as JSON-ready data, marked with their ``source``."""
    return _finite(
        {
            "source": source,
            "policy": r.policy,
            "duration_s": r.duration_s,
            "warmup_s": r.warmup_s,
            "requests": r.requests,
            "completed": r.completed,
            "latency_ms": {"p50": r.latency_ms.p50, "p95": r.latency_ms.p95, "p99": r.latency_ms.p99},
            "slo_violation_rate": r.slo_violation_rate,
            "throughput_rps": r.throughput_rps,
            "offered_rps": r.offered_rps,
            "mean_accuracy": r.mean_accuracy,
            "peak_memory_mb": r.peak_memory_mb,
            "utilisation": dict(r.utilisation),
            "per_task": {
                t: {
                    "requests": m.requests,
                    "completed": m.completed,
                    "latency_ms": {"p50": m.latency_ms.p50, "p95": m.latency_ms.p95, "p99": m.latency_ms.p99},
                    "slo_violation_rate": m.slo_violation_rate,
                    "throughput_rps": m.throughput_rps,
                }
                for t, m in r.per_task.items()
            },
        }
    )
