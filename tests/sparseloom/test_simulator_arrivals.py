"""Arrival processes: rates match their parameters, seeds reproduce, traces replay exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseloom.arrivals import (
    active_windows,
    generate_arrivals,
    load_trace,
    mean_rate_hz,
    within,
)
from sparseloom.sim import make_arrivals
from sparseloom.workload import Bursty, Periodic, Poisson, Trace, Transitions


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_periodic_count_spacing_and_jitter() -> None:
    spec = Periodic(process="periodic", period_ms=20.0)
    times = generate_arrivals(spec, 10.0, rng())
    assert times.size in (499, 500)
    np.testing.assert_allclose(np.diff(times), 20.0)
    assert 0.0 <= times[0] < 20.0
    jittered = generate_arrivals(
        Periodic(process="periodic", period_ms=20.0, jitter_ms=3.0), 10.0, rng()
    )
    nominal = times[0] + 20.0 * np.arange(jittered.size)
    assert np.all(np.abs(jittered - nominal) <= 3.0 + 1e-9)
    assert np.all(np.diff(jittered) > 0)
    assert np.all((jittered >= 0) & (jittered < 10_000.0))


def test_poisson_rate_and_exponential_gaps() -> None:
    times = generate_arrivals(Poisson(process="poisson", rate_hz=50.0), 400.0, rng(1))
    expected = 50.0 * 400.0
    assert abs(times.size - expected) < 4 * np.sqrt(expected)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(20.0, rel=0.03)
    # Exponential gaps: coefficient of variation 1.
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    assert np.all(np.diff(times) >= 0) and times[-1] < 400_000.0


def test_bursty_mean_rate_and_burstiness() -> None:
    spec = Bursty(
        process="bursty",
        rate_on_hz=100.0,
        rate_off_hz=5.0,
        mean_on_s=1.0,
        mean_off_s=3.0,
    )
    times = generate_arrivals(spec, 2000.0, rng(2))
    assert mean_rate_hz(spec) == pytest.approx((100 * 1 + 5 * 3) / 4)
    assert times.size / 2000.0 == pytest.approx(mean_rate_hz(spec), rel=0.1)
    # Counts per second are far more dispersed than Poisson (index of dispersion >> 1).
    counts = np.bincount((times // 1000).astype(int), minlength=2000)
    assert counts.var() / counts.mean() > 5.0


def test_trace_replays_exactly_and_scales(tmp_path: Path) -> None:
    path = tmp_path / "arrivals.csv"
    path.write_text("timestamp_s,extra\n0.0,x\n0.25,y\n1.5,z\n3.0,w\n9.0,late\n")
    spec = Trace(process="trace", file="arrivals.csv")
    np.testing.assert_allclose(load_trace(path), [0.0, 0.25, 1.5, 3.0, 9.0])
    np.testing.assert_allclose(
        generate_arrivals(spec, 5.0, rng(), base_dir=tmp_path),
        [0.0, 250.0, 1500.0, 3000.0],
    )
    np.testing.assert_allclose(
        generate_arrivals(spec, 5.0, rng(), base_dir=tmp_path, rate_scale=2.0),
        [0.0, 125.0, 750.0, 1500.0, 4500.0],
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("0.1\nsoon\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        load_trace(bad)


def test_same_seed_same_arrivals_and_tasks_are_independent() -> None:
    specs = {
        "a": Poisson(process="poisson", rate_hz=30.0),
        "b": Periodic(process="periodic", period_ms=7.0),
    }
    one, two = make_arrivals(specs, 20.0, 5), make_arrivals(specs, 20.0, 5)
    other = make_arrivals(specs, 20.0, 6)
    for name in specs:
        np.testing.assert_array_equal(one.times_ms[name], two.times_ms[name])
    assert not np.array_equal(one.times_ms["a"], other.times_ms["a"])
    # Adding a task leaves the other tasks' arrivals unchanged.
    more = make_arrivals(
        {**specs, "c": Poisson(process="poisson", rate_hz=5.0)}, 20.0, 5
    )
    np.testing.assert_array_equal(more.times_ms["a"], one.times_ms["a"])


def test_rate_scale_multiplies_load() -> None:
    spec = Poisson(process="poisson", rate_hz=20.0)
    base = generate_arrivals(spec, 300.0, rng(3)).size
    doubled = generate_arrivals(spec, 300.0, rng(3), rate_scale=2.0).size
    assert doubled / base == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError):
        generate_arrivals(spec, 1.0, rng(), rate_scale=0.0)


def test_transition_sequence_gates_tasks() -> None:
    tr = Transitions(sequence=("car", "light", "car", "person"), dwell_s=2.0)
    windows = active_windows(tr, ["car", "light", "person", "always"], 10.0, rng())
    assert windows["car"] == [(0.0, 2000.0), (4000.0, 6000.0), (8000.0, 10000.0)]
    assert windows["light"] == [(2000.0, 4000.0)]
    assert windows["person"] == [(6000.0, 8000.0)]
    assert windows["always"] == [(0.0, 10000.0)]
    times = np.arange(0.0, 10_000.0, 500.0)
    np.testing.assert_array_equal(
        within(times, windows["light"]), [2000.0, 2500.0, 3000.0, 3500.0]
    )
    specs = {
        n: Periodic(process="periodic", period_ms=100.0)
        for n in ("car", "light", "person")
    }
    arrivals = make_arrivals(specs, 10.0, 0, transitions=tr)
    assert arrivals.times_ms["light"].size == 20 and arrivals.times_ms["car"].size == 60


def test_transition_matrix_follows_probabilities() -> None:
    tr = Transitions(matrix={"a": {"b": 1.0}, "b": {"a": 0.5, "b": 0.5}}, dwell_s=1.0)
    windows = active_windows(tr, ["a", "b"], 4000.0, rng(4))
    time_a = sum(e - s for s, e in windows["a"]) / 4_000_000.0
    # Stationary distribution of this chain: a = 1/3, b = 2/3.
    assert time_a == pytest.approx(1 / 3, abs=0.03)


def test_a_malformed_trace_is_refused_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseloom import arrivals
    from sparseloom.errors import InputError

    cases = {
        "negative.csv": ("time_s\n0.1\n# note\n\n0.2,x\n-1\n", r"negative\.csv:6: .*finite timestamp >= 0"),
        "word.csv": ("0.1\n0.2\nsoon\n", r"word\.csv:3: .*timestamp in seconds, found 'soon'"),
        "long.csv": ("0.1\n" + "1" * (arrivals.MAX_TRACE_LINE + 10) + "\n", r"long\.csv:2: .*lines of at most"),
        "oneline.csv": ("1" * (5 * 1024 * 1024), r"oneline\.csv:1: .*lines of at most"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=message):
            load_trace(tmp_path / name)
    monkeypatch.setattr(arrivals, "MAX_TRACE_EVENTS", 3)
    (tmp_path / "many.csv").write_text("0\n1\n2\n3\n")
    with pytest.raises(InputError, match="at most 3 timestamps"):
        load_trace(tmp_path / "many.csv")
    (tmp_path / "three.csv").write_text("2\n0\n1\n")
    np.testing.assert_allclose(load_trace(tmp_path / "three.csv"), [0.0, 1.0, 2.0])
