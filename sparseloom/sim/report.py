"""Reports of a comparison: the terminal table, ``results.json``, and all output files at once.

``results.json`` (written atomically) holds ``workload``, ``soc``,
``duration_s``, ``warmup_s``, ``seeds``, ``unavoidable_violation_rate`` (0..1: the requests
whose SLO is below their task's fastest accurate variant, a floor under every policy), a ``numbers`` note saying which
figures are modelled and which measured, and ``policies`` -> name ->
``slo_violation_rate`` (0..1), ``dropped_rate`` (0..1: requests that never
completed), ``shed_rate`` (0..1: the part of those shed at arrival by admission), ``throughput_rps``, ``latency_ms`` {p50, p95, p99} of completed
requests, ``mean_accuracy``, ``peak_memory_mb``, ``decision_us``
{p50, p99}, then the rest: memory, utilisation, task switches, loads,
re-plans, the plan's solver status, 95% bootstrap intervals (``ci95``:
[low, high], within the figure's range: a rate's within [0, 1]; null with one
seed), per-seed figures and per-task detail.
Values over seeds are means. Non-finite numbers (an unfinished request's
latency) are written as null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.problem import Problem
from sparseloom.sim.chrome_trace import write_chrome_trace
from sparseloom.core.metrics import BATCHES, SOURCES, Estimate, PolicySummary, RunResult
from sparseloom.sim.plots import plot_latency_cdf, plot_violations
from sparseloom.sim.runner import Comparison
from stitching.atomic import write_json

NUMBERS_NOTE = (
    "Latency, throughput, violations, accuracy, memory and utilisation are modelled: simulated from the "
    "profile (per block and processor latency, transfer and storage costs) and the accuracy figures in the "
    "problem. decision_us and replan_ms are measured: wall-clock time of the policy's own calls on the "
    "machine that ran the simulation."
)


def _num(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _ci(e: Estimate) -> list[float | None] | None:
    if e.ci95 is None:
        return None
    return [_num(e.low), _num(e.high)]


def _mean_of(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    if len(known) != len(values) or not known:
        return None
    return _num(float(np.mean(known)))


def _task_detail(name: str, summary: PolicySummary) -> dict[str, Any]:
    runs = summary.runs
    tm = [r.per_task[name] for r in runs]
    return {
        "requests": int(sum(t.requests for t in tm)),
        "slo_violation_rate": _num(summary.per_task_violation_rate[name].mean),
        "latency_violations": int(sum(t.latency_violations for t in tm)),
        "accuracy_violations": int(sum(t.accuracy_violations for t in tm)),
        "accuracy_unknown": int(sum(t.accuracy_unknown for t in tm)),
        "throughput_rps": _num(summary.per_task_throughput_rps[name].mean),
        "latency_ms": {
            "p50": _num(float(np.mean([t.latency_ms.p50 for t in tm]))),
            "p95": _num(float(np.mean([t.latency_ms.p95 for t in tm]))),
            "p99": _num(float(np.mean([t.latency_ms.p99 for t in tm]))),
            "mean": _num(float(np.mean([t.latency_ms.mean for t in tm]))),
        },
        "mean_accuracy": _mean_of([t.mean_accuracy for t in tm]),
        "ci95": {
            "slo_violation_rate": _ci(summary.per_task_violation_rate[name]),
            "latency_p99_ms": _ci(summary.per_task_latency_p99_ms[name]),
            "throughput_rps": _ci(summary.per_task_throughput_rps[name]),
        },
    }


def _per_seed(r: RunResult) -> dict[str, Any]:
    return {
        "seed": r.seed,
        "requests": r.requests,
        "offered_rps": _num(r.offered_rps),
        "slo_violation_rate": _num(r.slo_violation_rate),
        "dropped_rate": _num(r.dropped_rate),
        "shed_rate": _num(r.shed_rate),
        "throughput_rps": _num(r.throughput_rps),
        "latency_ms": {
            "p50": _num(r.latency_ms.p50),
            "p95": _num(r.latency_ms.p95),
            "p99": _num(r.latency_ms.p99),
        },
        "mean_accuracy": _num(r.mean_accuracy),
        "peak_memory_mb": _num(r.peak_memory_mb),
        "block_executions": r.block_executions,
        "sim_wall_s": _num(r.sim_wall_s),
    }


def policy_entry(summary: PolicySummary, comparison: Comparison) -> dict[str, Any]:
    """One policy's block of ``results.json``."""
    runs = summary.runs
    plan = comparison.plans.get(summary.policy)
    replans = [ms for r in runs for ms in r.replan_ms]
    acc = summary.mean_accuracy
    return {
        "slo_violation_rate": _num(summary.slo_violation_rate.mean),
        "dropped_rate": _num(summary.dropped_rate.mean),
        "shed_rate": _num(summary.shed_rate.mean),
        "throughput_rps": _num(summary.throughput_rps.mean),
        "latency_ms": {
            "p50": _num(summary.latency_p50_ms.mean),
            "p95": _num(summary.latency_p95_ms.mean),
            "p99": _num(summary.latency_p99_ms.mean),
        },
        "mean_accuracy": None if acc is None else _num(acc.mean),
        "peak_memory_mb": _num(summary.peak_memory_mb.mean),
        "decision_us": {
            "p50": _num(summary.decision_us_p50),
            "p99": _num(summary.decision_us_p99),
        },
        "mean_memory_mb": _num(summary.mean_memory_mb.mean),
        "offered_rps": _num(float(np.mean([r.offered_rps for r in runs]))),
        "requests": int(sum(r.requests for r in runs)),
        "accuracy_unknown": int(sum(r.accuracy_unknown for r in runs)),
        "utilisation": {p: _num(e.mean) for p, e in summary.utilisation.items()},
        "task_switches": _num(summary.task_switches.mean),
        "variant_switches": _num(summary.variant_switches.mean),
        "loads": _num(float(np.mean([r.loads for r in runs]))),
        "load_ms": _num(summary.load_ms.mean),
        "evictions": _num(float(np.mean([r.evictions for r in runs]))),
        "replans": len(replans),
        "replan_ms": {"mean": _num(float(np.mean(replans))), "max": _num(max(replans))}
        if replans
        else None,
        "plan_wall_s": _num(comparison.plan_wall_s.get(summary.policy)),
        "plan": None
        if plan is None
        else {
            "solver": plan.info.solver,
            "status": plan.info.status,
            "feasible": plan.feasible,
            "explanation": list(plan.explanation),
        },
        "ci95": {
            "slo_violation_rate": _ci(summary.slo_violation_rate),
            "dropped_rate": _ci(summary.dropped_rate),
            "throughput_rps": _ci(summary.throughput_rps),
            "latency_p50_ms": _ci(summary.latency_p50_ms),
            "latency_p95_ms": _ci(summary.latency_p95_ms),
            "latency_p99_ms": _ci(summary.latency_p99_ms),
            "mean_accuracy": None if acc is None else _ci(acc),
            "peak_memory_mb": _ci(summary.peak_memory_mb),
        },
        "per_seed": [_per_seed(r) for r in runs],
        "tasks": {name: _task_detail(name, summary) for name in runs[0].per_task},
    }


def results_dict(
    comparison: Comparison,
    *,
    workload: str,
    soc: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` document as a dict (see the module docstring)."""
    doc: dict[str, Any] = {
        "workload": workload,
        "soc": soc,
        "duration_s": comparison.duration_s,
        "warmup_s": comparison.warmup_s,
        "seeds": list(comparison.seeds),
        "rate_scale": comparison.rate_scale,
        "unavoidable_violation_rate": comparison.unavoidable_rate,
        "numbers": {
            "note": NUMBERS_NOTE,
            "source": dict(SOURCES),
        },
        "policies": {
            name: policy_entry(s, comparison) for name, s in comparison.policies.items()
        },
    }
    if extra:
        doc.update(extra)
    return doc


def write_results(
    path: str | Path,
    comparison: Comparison,
    *,
    workload: str,
    soc: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``results.json`` atomically and return what was written."""
    doc = results_dict(comparison, workload=workload, soc=soc, extra=extra)
    write_json(Path(path), doc)
    return doc


def _fmt(x: float | None, spec: str, scale: float = 1.0) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return format(x * scale, spec)


def _fmt_ci(e: Estimate, spec: str, scale: float = 1.0) -> str:
    """``mean [low-high]`` (the interval need not be symmetric), or the mean alone."""
    text = _fmt(e.mean, spec, scale)
    if e.interval is None or not math.isfinite(e.mean):
        return text
    return f"{text} [{_fmt(e.low, spec, scale)}-{_fmt(e.high, spec, scale)}]"


def format_table(comparison: Comparison) -> str:
    """A plain-text table, one row per policy: the headline figures with 95% intervals where seeds allow."""
    header = [
        "policy",
        "viol % [95% CI]",
        "dropped %",
        "thr rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "accuracy",
        "peak MB",
        "util %",
        "var sw",
        "decide us p50/p99",
    ]
    rows = [header]
    any_unknown = False
    for name, s in comparison.policies.items():
        util = max((e.mean for e in s.utilisation.values()), default=float("nan"))
        acc = s.mean_accuracy
        partly_unknown = any(r.accuracy_unknown for r in s.runs)
        any_unknown = any_unknown or partly_unknown
        rows.append(
            [
                name,
                _fmt_ci(s.slo_violation_rate, ".1f", 100.0),
                _fmt(s.dropped_rate.mean, ".1f", 100.0),
                _fmt(s.throughput_rps.mean, ".0f"),
                _fmt(s.latency_p50_ms.mean, ".2f"),
                _fmt(s.latency_p95_ms.mean, ".2f"),
                _fmt(s.latency_p99_ms.mean, ".2f"),
                "unknown"
                if acc is None
                else _fmt(acc.mean, ".4f") + ("*" if partly_unknown else ""),
                _fmt(s.peak_memory_mb.mean, ".1f"),
                _fmt(util, ".0f", 100.0),
                _fmt(s.variant_switches.mean, ".0f"),
                f"{_fmt(s.decision_us_p50, '.1f')}/{_fmt(s.decision_us_p99, '.1f')}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:])
        ]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    seeds = comparison.seeds
    lines.append("")
    lines.append(
        f"{len(seeds)} seed(s) {seeds[0]}..{seeds[-1]}, {comparison.duration_s:g} s simulated "
        f"({comparison.warmup_s:g} s warm-up excluded); [95% CI]: bootstrap over seeds x {BATCHES} batches; "
        "dropped: never completed (counted as violations); percentiles: completed requests; "
        "util = busiest processor; var sw: changes of stitched variant between a task's consecutive requests."
    )
    if comparison.unavoidable_rate > 0:
        lines.append(
            f"unavoidable: {100 * comparison.unavoidable_rate:.1f}% of requests have a latency SLO below their "
            "task's fastest accurate variant on this SoC; every policy misses them."
        )
    if any_unknown:
        lines.append(
            "* accuracy unknown for some requests (profiling-only models); the mean covers the rest."
        )
    lines.append(
        "Latency, violations, throughput, accuracy, memory: modelled. decide us: measured wall-clock."
    )
    return "\n".join(lines)


def write_outputs(
    out_dir: str | Path,
    comparison: Comparison,
    *,
    workload: str,
    soc: str,
    problem: Problem | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write everything a comparison gives into ``out_dir``: results.json, the two plots, one trace per policy.

    Traces are written for policies whose first run kept a schedule log
    (``compare(..., trace_until_s=...)``). Returns the written paths by kind.
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {"results": out / "results.json"}
    write_results(paths["results"], comparison, workload=workload, soc=soc, extra=extra)
    slo: dict[str, list[float]] | None = None
    if problem is not None:
        slo = {t.name: [t.latency_slo_ms] for t in problem.tasks}
        for ch in comparison.slo_changes:
            if ch.latency_ms is not None and ch.task in slo:
                slo[ch.task].append(ch.latency_ms)
    paths["latency_cdf"] = plot_latency_cdf(
        comparison, out / "latency_cdf.png", slo_ms=slo
    )
    paths["violations"] = plot_violations(comparison, out / "violations.png")
    for name, summary in comparison.policies.items():
        log = summary.runs[0].schedule
        if log is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            paths[f"trace:{name}"] = write_chrome_trace(
                out / f"trace_{safe}.json", log, policy=name, problem=problem
            )
    return paths
