"""The simulated schedule as a Chrome-trace / Perfetto JSON file (open in ui.perfetto.dev).

One track per processor with a complete event ("ph": "X") per block
execution, one track for the storage channel with its loads, and instant
events for evictions and re-plans. Times are in microseconds of simulated
time. The engine logs only the first ``trace_until_s`` seconds and this
writer keeps at most ``max_events`` events, so files stay small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scheduler.problem import Problem
from sparseloom.core.metrics import ScheduleLog
from stitching.atomic import write_text


def _variant_of(problem: Problem | None) -> dict[str, str]:
    if problem is None:
        return {}
    return {
        o.digest: o.variant for t in problem.tasks for opts in t.positions for o in opts
    }


def trace_events(
    log: ScheduleLog,
    *,
    policy: str = "",
    problem: Problem | None = None,
    max_events: int = 100_000,
) -> dict[str, Any]:
    """The Chrome-trace document for one run's schedule log."""
    pid = 1
    storage_tid = len(log.processors)
    variants = _variant_of(problem)
    events: list[dict[str, Any]] = [
        {
            "ph": "M",
            "pid": pid,
            "name": "process_name",
            "args": {"name": f"SoC ({policy})" if policy else "SoC"},
        }
    ]
    for tid, name in enumerate(log.processors):
        events.append(
            {
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "name": "thread_name",
                "args": {"name": name},
            }
        )
    events.append(
        {
            "ph": "M",
            "pid": pid,
            "tid": storage_tid,
            "name": "thread_name",
            "args": {"name": "storage"},
        }
    )
    body: list[dict[str, Any]] = []
    for p, r, pos, b, start, dur in log.executions:
        task = log.tasks[log.request_task[r]]
        digest = log.blocks[b]
        variant = variants.get(digest, "")
        body.append(
            {
                "ph": "X",
                "pid": pid,
                "tid": p,
                "name": f"{task} b{pos} {variant}".rstrip(),
                "cat": "block",
                "ts": start * 1000.0,
                "dur": dur * 1000.0,
                "args": {
                    "request": r,
                    "task": task,
                    "position": pos,
                    "variant": variant,
                    "block": digest,
                },
            }
        )
    for b, start, dur in log.loads:
        digest = log.blocks[b]
        body.append(
            {
                "ph": "X",
                "pid": pid,
                "tid": storage_tid,
                "name": f"load {variants.get(digest, '')} {digest[:10]}".replace(
                    "  ", " "
                ),
                "cat": "load",
                "ts": start * 1000.0,
                "dur": dur * 1000.0,
                "args": {"block": digest},
            }
        )
    for b, t in log.evictions:
        body.append(
            {
                "ph": "i",
                "s": "t",
                "pid": pid,
                "tid": storage_tid,
                "name": "evict",
                "cat": "memory",
                "ts": t * 1000.0,
                "args": {"block": log.blocks[b]},
            }
        )
    for t, wall_us in log.replans:
        body.append(
            {
                "ph": "i",
                "s": "g",
                "pid": pid,
                "name": "re-plan",
                "cat": "policy",
                "ts": t * 1000.0,
                "args": {"wall_us_measured": wall_us},
            }
        )
    body.sort(key=lambda e: e["ts"])
    truncated = len(body) > max_events
    return {
        "traceEvents": events + body[:max_events],
        "displayTimeUnit": "ms",
        "otherData": {
            "policy": policy,
            "simulated_until_ms": log.until_ms,
            "truncated": truncated,
            "times": "modelled (simulated schedule)",
        },
    }


def write_chrome_trace(
    path: str | Path,
    log: ScheduleLog,
    *,
    policy: str = "",
    problem: Problem | None = None,
    max_events: int = 100_000,
) -> Path:
    """Write the schedule as Chrome-trace JSON, atomically."""
    out = Path(path)
    doc = trace_events(log, policy=policy, problem=problem, max_events=max_events)
    write_text(out, json.dumps(doc, separators=(",", ":")))
    return out
