"""Request arrival times for the simulator: periodic, Poisson, bursty (on/off MMPP) and trace.

Every generator takes a :class:`numpy.random.Generator`, so one seed gives the
same arrivals on every run and every policy sees the same requests. Times are
returned in milliseconds, sorted, within ``[0, duration)``.

``rate_scale`` multiplies the offered load: periods shrink, Poisson rates grow,
a trace is replayed faster. Bursty on/off durations stay as they are, so
burstiness keeps its shape while the load grows.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sparseloom.errors import InputError, Complaint
from sparseloom.workload import Arrival, Bursty, Periodic, Poisson, Trace, Transitions

# A trace line is a timestamp and maybe a few more CSV columns; a longer line is not a trace. The
# event bound keeps a replay's arrays (8 bytes a timestamp, a few copies) near a gigabyte at most.
MAX_TRACE_LINE = 4096
MAX_TRACE_EVENTS = 20_000_000


def _trace_lines(fh: BinaryIO, path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """The file's lines in chunks of about 4 MB, each with the number of its first line; a line
    longer than :data:`MAX_TRACE_LINE` bytes is refused before it is decoded."""
    lineno, rest = 1, b""
    while chunk := fh.read(4 * 1024 * 1024):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for k, part in enumerate((*parts, rest)):
            if len(part) > MAX_TRACE_LINE:
                raise InputError([Complaint("", f"lines of at most {MAX_TRACE_LINE} bytes", "a longer line",
                                          str(path), lineno + k)])
        yield lineno, [p.decode("utf-8", "replace") for p in parts]
        lineno += len(parts)
    if rest:
        yield lineno, [rest.decode("utf-8", "replace")]


def _field(line: str) -> str:
    """A trace line's timestamp field as numpy's reader sees it: the first column, comments cut."""
    return line.split("#", 1)[0].split(",", 1)[0].strip()


def _rows(first: int, lines: list[str]) -> list[tuple[int, str]]:
    """(line number, field) of each data row, to name a bad one: numpy's message counts rows, not lines."""
    return [(first + k, f) for k, line in enumerate(lines) if (f := _field(line))]


def load_trace(path: str | Path) -> np.ndarray:
    """Arrival timestamps in seconds from a file: one per line (first CSV column); a header is skipped.

    Memory stays bounded: the file is parsed in chunks of about 4 MB (numpy's C reader), timestamps
    go into a packed array (8 bytes each), and a line longer than :data:`MAX_TRACE_LINE` bytes or a
    file past :data:`MAX_TRACE_EVENTS` timestamps is refused. Problems raise
    :class:`~sparseloom.errors.InputError` with the file and line."""

    def bad(lineno: int, expected: str, found: str) -> InputError:
        return InputError([Complaint("", expected, found, str(path), lineno)])

    times = array("d")
    with open(path, "rb") as fh:
        for first, lines in _trace_lines(fh, path):
            if first == 1 and lines:
                try:
                    float(_field(lines[0]) or "0")
                except ValueError:
                    lines[0] = ""  # a header line
            try:
                values = np.loadtxt(lines, delimiter=",", usecols=0, comments="#", dtype=np.float64, ndmin=1)
            except ValueError:
                for lineno, f in _rows(first, lines):
                    try:
                        float(f)
                    except ValueError:
                        raise bad(lineno, "a timestamp in seconds", repr(f[:40])) from None
                raise bad(first, "comma-separated lines with a timestamp first", "a malformed chunk") from None
            wrong = ~np.isfinite(values) | (values < 0)
            if wrong.any():
                k = int(np.argmax(wrong))
                raise bad(_rows(first, lines)[k][0], "a finite timestamp >= 0", str(values[k]))
            if len(times) + values.size > MAX_TRACE_EVENTS:
                raise bad(first, f"at most {MAX_TRACE_EVENTS:,} timestamps", "more")
            times.frombytes(values.tobytes())
    return np.sort(np.frombuffer(times, dtype=np.float64)) if times else np.empty(0)


def _poisson(
    rate_per_ms: float, start_ms: float, end_ms: float, rng: np.random.Generator
) -> np.ndarray:
    """Homogeneous Poisson arrivals in [start, end), by cumulative exponential gaps."""
    span = end_ms - start_ms
    if rate_per_ms <= 0 or span <= 0:
        return np.empty(0)
    parts: list[np.ndarray] = []
    t = start_ms
    while True:
        expected = rate_per_ms * (end_ms - t)
        n = int(expected + 6.0 * np.sqrt(expected) + 16)
        times = t + np.cumsum(rng.exponential(1.0 / rate_per_ms, size=n))
        if times[-1] >= end_ms:
            parts.append(times[times < end_ms])
            break
        parts.append(times)
        t = float(times[-1])
    return np.concatenate(parts)


def _bursty(
    spec: Bursty, scale: float, duration_ms: float, rng: np.random.Generator
) -> np.ndarray:
    """On/off MMPP: exponential on and off periods, Poisson within each at its own rate."""
    mean_on_ms, mean_off_ms = spec.mean_on_s * 1000.0, spec.mean_off_s * 1000.0
    # Start in the stationary state so short runs are not biased towards "on".
    on = bool(rng.random() < mean_on_ms / (mean_on_ms + mean_off_ms))
    parts: list[np.ndarray] = []
    t = 0.0
    while t < duration_ms:
        length = float(rng.exponential(mean_on_ms if on else mean_off_ms))
        end = min(t + length, duration_ms)
        rate_hz = spec.rate_on_hz if on else spec.rate_off_hz
        parts.append(_poisson(rate_hz * scale / 1000.0, t, end, rng))
        t, on = t + length, not on
    return np.concatenate(parts) if parts else np.empty(0)


def generate_arrivals(
    spec: Arrival,
    duration_s: float,
    rng: np.random.Generator,
    *,
    rate_scale: float = 1.0,
    base_dir: str | Path = ".",
) -> np.ndarray:
    """Sorted arrival times (ms) in ``[0, duration_s)`` for one task's arrival process."""
    if rate_scale <= 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    duration_ms = duration_s * 1000.0
    if isinstance(spec, Periodic):
        period = spec.period_ms / rate_scale
        # A random phase keeps several periodic tasks from arriving in lock-step.
        phase = float(rng.uniform(0.0, period))
        times = np.arange(phase, duration_ms, period)
        if spec.jitter_ms > 0:
            times = times + rng.uniform(
                -spec.jitter_ms, spec.jitter_ms, size=times.size
            )
            times = np.sort(times[(times >= 0) & (times < duration_ms)])
        return times
    if isinstance(spec, Poisson):
        return _poisson(spec.rate_hz * rate_scale / 1000.0, 0.0, duration_ms, rng)
    if isinstance(spec, Bursty):
        return _bursty(spec, rate_scale, duration_ms, rng)
    if isinstance(spec, Trace):
        times = load_trace(Path(base_dir) / spec.file) * 1000.0 / rate_scale
        return times[times < duration_ms]
    raise TypeError(f"unknown arrival process {spec!r}")


def sustained_rate_hz(spec: Arrival, *, base_dir: str | Path = ".") -> float | None:
    """The rate the process brings for stretches long against a latency SLO, where that differs from
    its mean: a bursty process's on-state rate (its on periods are given in seconds, thousands of
    times a millisecond SLO, so a queue cannot smooth a burst over). None: the mean is what it brings
    (periodic, Poisson; a trace, whose burst structure is not declared)."""
    if isinstance(spec, Bursty):
        return max(spec.rate_on_hz, spec.rate_off_hz)
    return None


def mean_rate_hz(spec: Arrival, *, base_dir: str | Path = ".") -> float:
    """The long-run mean arrival rate the process is parameterised for (a trace: count / last time)."""
    if isinstance(spec, Periodic):
        return 1000.0 / spec.period_ms
    if isinstance(spec, Poisson):
        return spec.rate_hz
    if isinstance(spec, Bursty):
        on, off = spec.mean_on_s, spec.mean_off_s
        return (spec.rate_on_hz * on + spec.rate_off_hz * off) / (on + off)
    if isinstance(spec, Trace):
        times = load_trace(Path(base_dir) / spec.file)
        return float(times.size / times[-1]) if times.size and times[-1] > 0 else 0.0
    raise TypeError(f"unknown arrival process {spec!r}")


def active_windows(
    transitions: Transitions,
    task_names: Sequence[str],
    duration_s: float,
    rng: np.random.Generator,
) -> dict[str, list[tuple[float, float]]]:
    """When each task is active (ms intervals) under a task-transition pattern.

    A sequence is cycled with ``dwell_s`` per step; a matrix is a Markov chain
    started at its first row, one step per ``dwell_s``. Tasks the pattern does
    not mention are active all the time.
    """
    duration_ms = duration_s * 1000.0
    dwell_ms = transitions.dwell_s * 1000.0
    mentioned: list[str]
    steps: list[str] = []
    if transitions.sequence is not None:
        mentioned = list(transitions.sequence)
        n = int(np.ceil(duration_ms / dwell_ms))
        steps = [mentioned[i % len(mentioned)] for i in range(n)]
    else:
        matrix: Mapping[str, Mapping[str, float]] = transitions.matrix or {}
        mentioned = sorted(
            {s for s in matrix} | {d for row in matrix.values() for d in row}
        )
        state = next(iter(matrix))
        while len(steps) * dwell_ms < duration_ms:
            steps.append(state)
            row = matrix.get(state) or {state: 1.0}
            names = list(row)
            probs = np.asarray([row[n] for n in names], dtype=np.float64)
            state = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    windows: dict[str, list[tuple[float, float]]] = {n: [] for n in task_names}
    for name in task_names:
        if name not in mentioned:
            windows[name] = [(0.0, duration_ms)]
    for i, name in enumerate(steps):
        start, end = i * dwell_ms, min((i + 1) * dwell_ms, duration_ms)
        spans = windows.setdefault(name, [])
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return windows


def within(times: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """The arrival times that fall inside any of the (sorted, disjoint) windows."""
    if not windows:
        return times[:0]
    starts = np.asarray([w[0] for w in windows])
    ends = np.asarray([w[1] for w in windows])
    idx = np.searchsorted(starts, times, side="right") - 1
    ok = idx >= 0
    ok[ok] = times[ok] < ends[idx[ok]]
    return times[ok]
