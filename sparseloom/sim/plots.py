"""PNG plots of a comparison: per-task latency CDFs and violation bars per policy.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing
global changes, and written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sparseloom.core.metrics import Estimate
from sparseloom.sim.runner import Comparison
from stitching.atomic import write_bytes

# Points kept per CDF line.
_CDF_POINTS = 2000


def _yerr(ests: Sequence[Estimate], scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bars from each estimate's interval (none where it has no interval)."""
    return [[scale * (e.mean - e.low) for e in ests], [scale * (e.high - e.mean) for e in ests]]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buf.getvalue())
    return path


def plot_latency_cdf(
    comparison: Comparison,
    path: str | Path,
    *,
    slo_ms: Mapping[str, float | Sequence[float]] | None = None,
) -> Path:
    """One panel per task, one CDF line per policy (all seeds pooled) on a log time axis, so the
    region around the SLO is readable next to a long tail; each SLO the task has during the run
    as a dashed line.

    Requests that never completed (dropped or unfinished) count in the denominator, so a curve
    that stops below 1 shows the share that never finished.
    """
    first = next(iter(comparison.policies.values()))
    tasks = list(first.runs[0].per_task)
    cols = min(3, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, summary in comparison.policies.items():
            lat = np.concatenate([r.latencies_ms[task] for r in summary.runs])
            if lat.size == 0:
                continue
            finite = np.sort(lat[np.isfinite(lat)])
            frac = np.arange(1, finite.size + 1) / lat.size
            if finite.size > _CDF_POINTS:  # a few thousand steps look the same and draw in milliseconds
                keep = np.unique(np.linspace(0, finite.size - 1, _CDF_POINTS).astype(np.int64))
                finite, frac = finite[keep], frac[keep]
            ax.step(finite, frac, where="post", label=name)
        if slo_ms and task in slo_ms:
            marks = slo_ms[task]
            for n, slo in enumerate([marks] if isinstance(marks, (int, float)) else marks):
                ax.axvline(slo, color="black", linestyle="--", linewidth=1, label="SLO" if n == 0 else None)
        ax.set_xscale("log")
        # Plain numbers, at the decades on a wide range; at 1, 2 and 5 per decade on one under 2.5
        # decades, which may hold no decade at all (1.2-4.8 ms). matplotlib's default labels the
        # minor ticks of a short log range too, and they run into each other.
        lo, hi = ax.get_xlim()
        short = hi / lo < 10**2.5 if lo > 0 else False
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(task)
        ax.set_xlabel("latency (ms, modelled, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Per-task latency CDF")
    return _save(fig, Path(path))


def plot_violations(comparison: Comparison, path: str | Path) -> Path:
    """Bars of SLO violation rate per policy: overall and per task, with 95% CI whiskers when seeds allow."""
    policies = list(comparison.policies)
    first = comparison.policies[policies[0]]
    groups = ["overall", *first.runs[0].per_task]
    width = 0.8 / max(1, len(policies))
    x = np.arange(len(groups))
    fig = Figure(
        figsize=(min(12.0, max(6.0, 1.3 * len(groups) * max(1, len(policies)) / 2 + 3)), 4.0)
    )
    ax = fig.add_subplot(1, 1, 1)
    for j, name in enumerate(policies):
        s = comparison.policies[name]
        ests = [
            s.slo_violation_rate,
            *(s.per_task_violation_rate[t] for t in groups[1:]),
        ]
        means = [100.0 * e.mean for e in ests]
        ax.bar(
            x + (j - (len(policies) - 1) / 2) * width,
            means,
            width,
            yerr=_yerr(ests, 100.0),
            capsize=2,
            label=name,
        )
    ax.set_xticks(x, groups)
    ax.set_ylabel("SLO violations (%, modelled)")
    ax.set_ylim(0, None)
    ax.set_title("SLO violation rate per policy (95% bootstrap intervals)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, Path(path))


def plot_sweep(
    points: list[tuple[float, Comparison]],
    path: str | Path,
    *,
    axis_label: str,
) -> Path:
    """Violation rate and throughput of every policy against the swept value (95% CI as error bars)."""
    fig = Figure(figsize=(10, 3.6))
    ax_v = fig.add_subplot(1, 2, 1)
    ax_t = fig.add_subplot(1, 2, 2)
    names = list(points[0][1].policies) if points else []
    xs = [x for x, _ in points]
    for name in names:
        viol = [c.policies[name].slo_violation_rate for _, c in points]
        thr = [c.policies[name].throughput_rps for _, c in points]
        ax_v.errorbar(xs, [100 * e.mean for e in viol], yerr=_yerr(viol, 100.0), marker="o", capsize=2, label=name)
        ax_t.errorbar(xs, [e.mean for e in thr], yerr=_yerr(thr), marker="o", capsize=2, label=name)
    ax_v.set_xlabel(axis_label)
    ax_v.set_ylabel("SLO violations (%, modelled)")
    ax_v.axhline(5, color="black", linestyle=":", linewidth=1)
    ax_t.set_xlabel(axis_label)
    ax_t.set_ylabel("throughput (req/s, modelled)")
    ax_t.legend(fontsize=7)
    return _save(fig, Path(path))
