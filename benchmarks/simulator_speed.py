"""Simulator speed: block executions per simulated-wall second, and one simulated hour of an AR-like mix.

Both numbers are measured on this machine: median wall-clock time of repeats
(the loop is single-threaded, so it uses one core), plus CPU time, which is
steadier when other work shares the cores. Times include turning the raw run
into metrics. The workload is synthetic but shaped like
the AR-glasses scenario: 4 concurrent tasks of 4 blocks each on 3 processors,
Poisson/periodic/bursty arrivals (tens of requests/s), a memory budget
that forces loads and evictions, and a policy that reads the queue state on
every decision.

The third and fourth lines run the same hour with the scheduler's registered
policies `sparseloom` and `band-heft` (their real `decide`) on
`scheduler.synthetic.random_problem` (4 tasks x 4 blocks, 3 processors, ~40 req/s).

Targets (issue 6): >= 200,000 block executions/s; one simulated hour <= 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import time

from scheduler import registry
from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policy import Policy, PolicyBase, QueueView
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec
from scheduler.synthetic import random_problem
from sparseloom.sim import RunResult, make_arrivals, simulate
from sparseloom.workload import Arrival, Bursty, Periodic, Poisson

PROCS = ("cpu", "gpu", "npu")


class LeastBacklog(PolicyBase):
    """Per request, the stored alternative whose first processor has the least backlog (reads QueueView)."""

    name = "least-backlog"

    def plan(self, problem: Problem) -> Plan:
        routes: dict[str, Route] = {}
        alts: dict[str, tuple[Route, ...]] = {}
        for task in problem.tasks:
            found = []
            for shift in range(len(PROCS)):
                procs = tuple(
                    PROCS[(p + shift) % len(PROCS)] for p in range(len(task.positions))
                )
                opts = tuple(0 for _ in task.positions)
                lat = sum(
                    task.positions[p][0].latency_ms[procs[p]] for p in range(len(opts))
                )
                found.append(
                    Route(task.name, opts, procs, lat, task.accuracy(opts), 0.0)
                )
            routes[task.name] = found[0]
            alts[task.name] = tuple(found)
        return Plan(routes, SolveInfo("bench", "ok", 0.0), alternatives=alts)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return min(
            plan.alternatives[task], key=lambda r: state.backlog_ms(r.processors[0])
        )


def ar_problem(block_ms: float, memory_budget_mb: float) -> Problem:
    tasks = []
    for k, name in enumerate(("speech", "image", "activity", "sentiment")):
        positions = tuple(
            (
                Block(
                    "dense",
                    f"{name}-b{i}",
                    20.0 + 5 * i,
                    {
                        p: block_ms * (1.0 + 0.3 * ((i + j + k) % 3))
                        for j, p in enumerate(PROCS)
                    },
                ),
            )
            for i in range(4)
        )
        tasks.append(
            TaskSpec(
                name, f"{name}-m", 50.0 + 10 * k, 0.0, 15.0, positions, (0.5,) * 4, 0.9
            )
        )
    return Problem(
        tasks=tuple(tasks),
        processors=tuple(ProcessorInfo(p, p) for p in PROCS),
        memory_budget_mb=memory_budget_mb,
        transfer_latency_ms=0.05,
        transfer_mb_per_ms=5.0,
        storage_mb_per_ms=2.0,
    )


def specs(scale: float) -> dict[str, Arrival]:
    return {
        "speech": Periodic(process="periodic", period_ms=100.0 / scale, jitter_ms=2.0),
        "image": Poisson(process="poisson", rate_hz=15.0 * scale),
        "activity": Periodic(process="periodic", period_ms=50.0 / scale),
        "sentiment": Bursty(
            process="bursty",
            rate_on_hz=20.0 * scale,
            rate_off_hz=2.0,
            mean_on_s=2.0,
            mean_off_s=5.0,
        ),
    }


def timed(
    problem: Problem,
    arrival: dict[str, Arrival],
    duration_s: float,
    repeats: int,
    policy: Policy | None = None,
) -> tuple[float, float, RunResult]:
    """Median wall and CPU seconds of ``simulate`` (metrics included) over repeats, and the last result."""
    walls: list[float] = []
    cpus: list[float] = []
    policy = policy or LeastBacklog()
    plan = policy.plan(problem)
    arrivals = make_arrivals(arrival, duration_s, seed=1)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate(
            problem, policy, arrivals, warmup_s=min(10.0, duration_s / 10), plan=plan
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), res


def describe(res: RunResult) -> str:
    util = ", ".join(f"{p} {u:.0%}" for p, u in res.utilisation.items())
    return (
        f"{res.requests / (res.duration_s - res.warmup_s):.0f} req/s, violations {res.slo_violation_rate:.1%}, "
        f"utilisation {util}, loads {res.loads:,}, evictions {res.evictions:,}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    # Throughput: short blocks and high load, so the loop does nothing but execute blocks.
    wall, cpu, res = timed(ar_problem(0.2, 10_000.0), specs(20.0), 300.0, args.repeats)
    rate = res.block_executions / wall
    print(
        f"block executions/s: {rate:,.0f} per wall s, {res.block_executions / cpu:,.0f} per CPU s "
        f"({res.block_executions:,} executions in {wall:.2f} s wall, measured; {describe(res)}) "
        f"target >= 200,000 -> ratio {rate / 200_000:.2f}"
    )

    # One simulated hour of the AR-like mix (about 65 requests/s, memory budget forcing evictions).
    wall, cpu, res = timed(ar_problem(2.0, 400.0), specs(1.0), 3600.0, args.repeats)
    print(
        f"one simulated hour (AR-like, 4 tasks x 4 blocks): {wall:.2f} s wall, {cpu:.2f} s CPU, measured "
        f"({res.block_executions:,} block executions; {describe(res)}) target <= 10 s -> ratio {10.0 / wall:.2f}"
    )

    # The same hour with the scheduler's registered policies (their real decide) on a synthetic problem.
    synthetic = random_problem(
        3, tasks=4, positions=4, variants=3, processors=3, load=0.5
    )
    poisson: dict[str, Arrival] = {
        t.name: Poisson(process="poisson", rate_hz=t.rate_hz) for t in synthetic.tasks
    }
    for name in ("sparseloom", "band-heft"):
        wall, cpu, res = timed(
            synthetic, poisson, 3600.0, args.repeats, registry.create(name)
        )
        print(
            f"one simulated hour, policy {name} (scheduler.synthetic, 4 tasks x 4 blocks, 3 processors): "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU, measured ({res.block_executions:,} block executions; "
            f"{describe(res)}; decide p50/p99 {res.decision_us_p50:.1f}/{res.decision_us_p99:.1f} us) "
            f"target <= 10 s -> ratio {10.0 / wall:.2f}"
        )


if __name__ == "__main__":
    main()
