"""Garbage-collector pauses in the real runtime, with its heap frozen at start and without.

Replays a workload's seeded arrivals in real time (``sparseloom run``'s path), once
with ``Runtime(freeze_heap=False)`` and once with the default ``freeze_heap=True``,
alternating, ``--repeats`` times each. Per run, all measured on this host:

- the longest full (generation 2) collection, timed by ``gc.callbacks``. The collector starts one
  when enough objects have survived since the last, which depends on everything the process did
  before (a plain ``sparseloom run``-like replay here met a 191 ms one 3.7 s in; a short benchmark
  process may meet none), so one is also started mid-run (``--collect-at``, a timer thread);
- the replay's submission lag (when a request was submitted, past its scheduled
  arrival): a collection holds the GIL, so the replay thread stalls behind it;
- the run's SLO violation rate and p99 latency (the runtime's own figures).

The ratios printed at the end are frozen over unfrozen, medians over repeats.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scheduler import registry
from sparseloom.runtime import Runtime
from sparseloom.runtime.replay import replay
from sparseloom.runtime.session import Session, prepare
from stitching.zoo import default_cache_dir

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    freeze: bool
    gc_max_ms: float  # longest generation-2 collection
    full_collections: int
    lag_p99_ms: float
    lag_max_ms: float
    violations: float
    p99_ms: float


def one(s: Session, freeze: bool, collect_at_s: float) -> Run:
    pauses: list[float] = []
    started: list[float] = []

    def timed(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append((time.perf_counter() - started.pop()) * 1e3)

    with Runtime(s.problem, registry.create(s.policy), s.soc, s.pool, cache_dir=s.cache_dir / "compiled",
                 freeze_heap=freeze) as rt:
        rt.warm()
        for t in s.problem.tasks:  # lazily initialised kernels before the clock starts, as calibrate does
            rt.submit(t.name, *s.inputs(t.name)).exception(timeout=120)
        first = len(rt.recorder.arrival_ms)
        gc.callbacks.append(timed)
        timer = threading.Timer(collect_at_s, gc.collect) if collect_at_s > 0 else None
        try:
            if timer is not None:
                timer.start()
            done = replay(rt, s.arrivals, s.inputs, slo_changes=s.experiment.slo_changes, keep_futures=False)
        finally:
            if timer is not None:
                timer.cancel()
            gc.callbacks.remove(timed)
        times, _ = s.arrivals.merged([t.name for t in s.problem.tasks])
        submitted = np.asarray(rt.recorder.arrival_ms[first:first + len(times)]) - done.start_ms
        lag = submitted - times[: len(submitted)]
        r = rt.result(duration_s=s.arrivals.duration_s, warmup_s=s.experiment.warmup_s, seed=s.arrivals.seed,
                      origin_ms=done.start_ms)
    return Run(freeze, max(pauses, default=0.0), len(pauses), float(np.percentile(lag, 99)), float(lag.max()),
               r.slo_violation_rate, r.latency_ms.p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workload", type=Path, default=ROOT / "workloads/scenarios/host_calibrate.yaml")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--collect-at", type=float, default=None, metavar="S",
                        help="start one full collection this far into each run (default: half way; 0: none)")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    s = prepare(args.workload, soc_path=None, policy=None, duration_s=args.seconds, seed=args.seed,
                cache_dir=args.cache or default_cache_dir(), progress=True)
    runs: list[Run] = []
    for i in range(args.repeats):
        for freeze in (False, True):
            r = one(s, freeze, args.seconds / 2 if args.collect_at is None else args.collect_at)
            runs.append(r)
            print(f"repeat {i + 1}/{args.repeats} freeze_heap={freeze!s:5}  longest full collection {r.gc_max_ms:7.1f} ms "
                  f"({r.full_collections})  submission lag p99 {r.lag_p99_ms:7.2f} ms max {r.lag_max_ms:7.1f} ms  "
                  f"violations {r.violations:6.2%}  p99 {r.p99_ms:7.2f} ms", flush=True)

    def med(freeze: bool, key: str) -> float:
        return statistics.median(getattr(r, key) for r in runs if r.freeze is freeze)

    print(f"\nmeasured on this host, {args.workload.name} seed {args.seed}, {args.seconds:g} s runs, "
          f"median of {args.repeats}; frozen / unfrozen:")
    for key, label in (("gc_max_ms", "longest full collection"), ("lag_max_ms", "longest submission lag"),
                       ("lag_p99_ms", "submission lag p99"), ("p99_ms", "latency p99")):
        a, b = med(True, key), med(False, key)
        print(f"  {label:<24} {a:8.2f} / {b:8.2f} ms = {a / b if b > 0 else float('nan'):.3f}")
    print(f"  {'violation rate':<24} {med(True, 'violations'):8.2%} / {med(False, 'violations'):8.2%}")


if __name__ == "__main__":
    main()
