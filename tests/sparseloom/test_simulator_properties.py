"""Engine invariants on random problems: memory budget, FIFO non-overlap, loads before runs, causality."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.problem import Block, Problem, TaskSpec
from sparseloom.sim import make_arrivals, simulate
from sparseloom.workload import Poisson
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of

PROCS = ("cpu", "gpu", "npu")


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Problem, FixedPolicy, dict[str, Poisson], float]:
    n_tasks = draw(st.integers(1, 3))
    tasks, routes, specs = [], {}, {}
    max_block = 0.0
    for k in range(n_tasks):
        n_blocks = draw(st.integers(1, 4))
        lat = [{p: draw(st.floats(0.1, 5.0)) for p in PROCS} for _ in range(n_blocks)]
        mem = draw(st.floats(1.0, 30.0))
        max_block = max(max_block, mem)
        # Blocks may be shared between tasks (same digest prefix), as stitched variants share blocks.
        prefix = "shared" if k > 0 and draw(st.booleans()) else f"t{k}"
        name = f"t{k}"
        tasks.append(
            chain_task(
                name,
                lat,
                memory_mb=mem,
                output_mb=draw(st.floats(0.0, 2.0)),
                slo_ms=draw(st.floats(2.0, 100.0)),
                digest_prefix=prefix,
            )
        )
        routes[name] = (
            tuple(0 for _ in lat),
            tuple(draw(st.sampled_from(PROCS)) for _ in lat),
        )
        specs[name] = Poisson(process="poisson", rate_hz=draw(st.floats(1.0, 150.0)))
    # Shared digests must agree on size: give every block of a shared prefix the first task's size.
    sizes: dict[str, float] = {}
    fixed = []
    for t in tasks:
        positions = []
        for opts in t.positions:
            o = opts[0]
            size = sizes.setdefault(o.digest, o.memory_mb)
            positions.append((Block(o.variant, o.digest, size, o.latency_ms),))
        fixed.append(
            TaskSpec(
                t.name,
                t.model,
                t.latency_slo_ms,
                t.min_accuracy,
                t.rate_hz,
                tuple(positions),
                t.output_mb,
                t.base_accuracy,
            )
        )
    budget = draw(st.floats(max(sizes.values()), 3 * sum(sizes.values())))
    problem = problem_of(
        fixed,
        PROCS,
        memory_budget_mb=budget,
        storage_mb_per_ms=draw(st.floats(0.5, 50.0)),
        transfer_latency_ms=draw(st.floats(0.0, 0.5)),
        transfer_mb_per_ms=5.0,
    )
    return problem, FixedPolicy("fixed", routes), specs, draw(st.floats(0.0, 1.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**16))
def test_engine_invariants(
    case: tuple[Problem, FixedPolicy, dict[str, Poisson], float], seed: int
) -> None:
    problem, policy, specs, warmup_s = case
    arrivals = make_arrivals(specs, 3.0, seed)
    res = simulate(
        problem,
        policy,
        arrivals,
        warmup_s=warmup_s,
        trace_until_s=10.0,
        prefetch=seed % 2 == 0,
    )
    assert res.peak_memory_mb <= problem.memory_budget_mb + 1e-6
    log = res.schedule
    assert log is not None
    # Non-preemptive FIFO: executions on one processor never overlap.
    for p in range(len(PROCS)):
        spans = sorted((s, s + d) for q, _, _, _, s, d in log.executions if q == p)
        assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(spans))
    # Loads are serial on the one storage channel.
    loads = sorted((s, s + d) for _, s, d in log.loads)
    assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(loads))
    # Each request's blocks run in order, after arrival, and every block ran after some load of it ended.
    load_ends: dict[int, list[float]] = {}
    for b, s, d in log.loads:
        load_ends.setdefault(b, []).append(s + d)
    last: dict[int, float] = {}
    times, _ = arrivals.merged([t.name for t in problem.tasks])
    for _, r, pos, b_logged, s, d in sorted(log.executions, key=lambda e: (e[1], e[2])):
        assert s >= last.get(r, times[r]) - 1e-9
        last[r] = s + d
        task = problem.tasks[log.request_task[r]]
        b = log.blocks.index(task.positions[pos][0].digest)
        assert b_logged == b
        assert any(end <= s + 1e-9 for end in load_ends.get(b, []))
    # Latency is never below the route's bare service time.
    for name, lat in res.latencies_ms.items():
        task = problem.task(name)
        _, procs = policy.routes[name]
        service = sum(task.positions[i][0].latency_ms[p] for i, p in enumerate(procs))
        assert np.all(lat >= service - 1e-9)
