"""Runtime throughput and overhead on this host: the digits model's blocks, torch eager and TVM.

All numbers are measured here (wall clock, medians over repeats; other work on
the machine's cores makes them noisy). For each executor:

- direct: the two blocks' runners called back to back in one thread (no runtime);
- runtime: closed loop with 8 requests outstanding through the runtime (policy
  decision, admission, worker queue, residency pins, hand-off, future);
- submit_us: median cost of one ``Runtime.submit`` call (decision + enqueue).

The ratio runtime/direct says what the runtime's machinery costs per request.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits

from backends.base import Runner
from scheduler import registry
from sparseloom.runtime import Runtime
from tests.sparseloom.runtime_helpers import digits_pool, digits_problem, host_soc


def closed_loop(rt: Runtime, xs: torch.Tensor, seconds: float, outstanding: int) -> tuple[float, float]:
    """Requests per second and median latency (ms) with ``outstanding`` requests always in flight."""
    pending: deque[tuple[float, Future[Any]]] = deque()
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    i = 0
    done = 0
    start = time.perf_counter()
    while time.perf_counter() < t_end:
        while len(pending) < outstanding:
            pending.append((time.perf_counter(), rt.submit("digits", xs[i % len(xs)].unsqueeze(0))))
            i += 1
        t0, f = pending.popleft()
        f.result(timeout=30)
        lat.append((time.perf_counter() - t0) * 1e3)
        done += 1
    for _, f in pending:
        f.result(timeout=30)
    return done / (time.perf_counter() - start), float(np.median(lat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    root = args.cache or Path(tempfile.mkdtemp(prefix="sparseloom-bench-"))
    pool = digits_pool(root / "pool", root / "cache")
    xs = torch.from_numpy((load_digits().images[:256] / 16.0).astype(np.float32))[:, None]
    for executor in ("torch", "tvm"):
        problem = digits_problem(pool, ("cpu0",), variants=("dense",), memory_budget_mb=64.0)
        with Runtime(problem, registry.create("sparseloom"), host_soc(executor, 1), pool,
                     cache_dir=root / "compiled", max_in_flight=64) as rt:
            rt.warm()
            route = rt.plan.routes["digits"]
            runners = [rt.residency.acquire(d, "cpu0") for d in route.digests]
            for d in route.digests:
                rt.residency.release(d)

            def direct(x: torch.Tensor, runners: list[Runner] = runners) -> torch.Tensor:
                ys: tuple[torch.Tensor, ...] = (x,)
                for r in runners:
                    ys = r(*ys)
                return ys[0]

            rates_direct, rates, p50s, submit_us = [], [], [], []
            for _ in range(args.repeats):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds / 2:
                    direct(xs[n % len(xs)].unsqueeze(0).clone())
                    n += 1
                rates_direct.append(n / (time.perf_counter() - t0))
                r, p50 = closed_loop(rt, xs, args.seconds, 8)
                rates.append(r)
                p50s.append(p50)
                costs = []
                for k in range(200):
                    t = time.perf_counter_ns()
                    f = rt.submit("digits", xs[k % len(xs)].unsqueeze(0))
                    costs.append((time.perf_counter_ns() - t) / 1e3)
                    f.result(timeout=30)
                submit_us.append(statistics.median(costs))
            d, r = statistics.median(rates_direct), statistics.median(rates)
            print(
                f"{executor:5s} (measured, 1 thread): direct {d:8.0f} req/s | runtime {r:8.0f} req/s "
                f"(p50 {statistics.median(p50s):.3f} ms at 8 outstanding) | ratio {r / d:.2f} | "
                f"submit {statistics.median(submit_us):.1f} us"
            )


if __name__ == "__main__":
    main()
