"""Report writers: the table, results.json keys and values, plots and the Chrome trace."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sparseloom.sim import Experiment, SLOChangeEvent, compare
from sparseloom.core.metrics import BATCHES, estimate_rate
from sparseloom.sim.report import format_table, write_outputs
from sparseloom.workload import Periodic, Poisson
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


@pytest.fixture(scope="module")
def outputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Path], object]:
    tasks = [
        chain_task(
            "a",
            [{"cpu": 2.0, "gpu": 1.0}] * 2,
            memory_mb=8.0,
            slo_ms=6.0,
            base_accuracy=0.9,
        ),
        chain_task(
            "b",
            [{"cpu": 3.0, "gpu": 2.0}] * 3,
            memory_mb=8.0,
            slo_ms=20.0,
            base_accuracy=None,
        ),
    ]
    problem = problem_of(
        tasks,
        ["cpu", "gpu"],
        memory_budget_mb=40.0,
        storage_mb_per_ms=8.0,
        transfer_latency_ms=0.2,
    )
    policies = [
        FixedPolicy(
            "split",
            {"a": ((0, 0), ("cpu", "gpu")), "b": ((0, 0, 0), ("gpu", "cpu", "gpu"))},
        ),
        FixedPolicy(
            "gpu-only",
            {"a": ((0, 0), ("gpu", "gpu")), "b": ((0, 0, 0), ("gpu", "gpu", "gpu"))},
        ),
    ]
    specs = {
        "a": Periodic(process="periodic", period_ms=25.0),
        "b": Poisson(process="poisson", rate_hz=60.0),
    }
    cmp = compare(
        problem,
        policies,
        specs,
        Experiment(duration_s=20.0, warmup_s=2.0, seeds=2, slo_changes=(SLOChangeEvent(500.0, "a", latency_ms=5.0),)),
        trace_until_s=1.0,
        progress=False,
    )
    out = tmp_path_factory.mktemp("report")
    paths = write_outputs(out, cmp, workload="unit", soc="toy", problem=problem)
    return out, paths, cmp


def test_results_json_has_the_promised_keys(
    outputs: tuple[Path, dict[str, Path], object],
) -> None:
    out, _paths, cmp = outputs
    doc = json.loads((out / "results.json").read_text())
    assert doc["workload"] == "unit" and doc["soc"] == "toy"
    assert doc["duration_s"] == 20.0 and doc["seeds"] == [0, 1]
    assert doc["numbers"]["source"]["decision_us"] == "measured"
    assert doc["numbers"]["source"]["latency_ms"] == "modelled"
    assert set(doc["policies"]) == {"split", "gpu-only"}
    for name, entry in doc["policies"].items():
        summary = cmp.policies[name]  # type: ignore[attr-defined]
        assert 0.0 <= entry["slo_violation_rate"] <= 1.0
        assert entry["slo_violation_rate"] == pytest.approx(
            summary.slo_violation_rate.mean
        )
        assert entry["throughput_rps"] > 0
        assert (
            entry["latency_ms"]["p50"]
            <= entry["latency_ms"]["p95"]
            <= entry["latency_ms"]["p99"]
        )
        # Task b's accuracy is unknown: the mean covers task a only, and the unknown ones are counted.
        assert entry["mean_accuracy"] == pytest.approx(0.9)
        assert entry["accuracy_unknown"] == entry["tasks"]["b"]["requests"]
        assert entry["tasks"]["a"]["mean_accuracy"] == pytest.approx(0.9)
        assert (
            entry["tasks"]["b"]["accuracy_unknown"]
            == entry["tasks"]["b"]["requests"]
            > 0
        )
        assert 0 < entry["peak_memory_mb"] <= 40.0
        assert (
            entry["decision_us"]["p50"] > 0
            and entry["decision_us"]["p99"] >= entry["decision_us"]["p50"]
        )
        low, high = entry["ci95"]["slo_violation_rate"]
        assert low <= entry["slo_violation_rate"] <= high
        assert len(entry["per_seed"]) == 2 and entry["replans"] == 2
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_plots_are_png(outputs: tuple[Path, dict[str, Path], object]) -> None:
    _, paths, _ = outputs
    for key in ("latency_cdf", "violations"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_chrome_trace_is_capped_and_consistent(
    outputs: tuple[Path, dict[str, Path], object],
) -> None:
    _, paths, _ = outputs
    doc = json.loads(paths["trace:split"].read_text())
    events = doc["traceEvents"]
    names = {
        e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert names == {"cpu", "gpu", "storage"}
    blocks = [e for e in events if e.get("cat") == "block"]
    loads = [e for e in events if e.get("cat") == "load"]
    assert blocks and loads
    assert all(e["ts"] < 1_000_000 for e in blocks)  # first simulated second only
    assert any(e.get("name") == "re-plan" for e in events)
    # Blocks on one processor never overlap (non-preemptive FIFO).
    for tid in {e["tid"] for e in blocks}:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in blocks if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(spans))
    # The split policy puts task a's second block on the gpu (tid 1).
    assert {e["tid"] for e in blocks if e["name"] == "a b1 dense"} == {1}
    assert all(e["args"]["block"].startswith(e["args"]["task"]) for e in blocks)


def test_table_lists_every_policy(
    outputs: tuple[Path, dict[str, Path], object],
) -> None:
    _, _, cmp = outputs
    text = format_table(cmp)  # type: ignore[arg-type]
    lines = text.splitlines()
    assert lines[0].split()[0] == "policy"
    assert any(line.startswith("split") for line in lines)
    assert any(line.startswith("gpu-only") for line in lines)
    assert "0.9000*" in text and "unknown" in text and "measured" in text
    widths = {len(line) for line in lines[:4]}
    assert len(widths) == 1  # aligned columns


def test_latencies_feed_the_cdf(outputs: tuple[Path, dict[str, Path], object]) -> None:
    _, _, cmp = outputs
    run = cmp.policies["gpu-only"].runs[0]  # type: ignore[attr-defined]
    lat = run.latencies_ms["a"]
    assert lat.size == run.per_task["a"].requests and np.all(lat >= 2.0)


@dataclass(frozen=True)
class _Batches:
    """What ``estimate_rate`` reads of a run: its (violations, requests) per batch."""

    batches: tuple[tuple[int, int], ...]


def _rate(cells: list[list[tuple[int, int]]]) -> tuple[float, tuple[float, float] | None]:
    runs = [_Batches(tuple(c)) for c in cells]
    per_seed = [sum(b for b, _ in c) / sum(n for _, n in c) for c in cells]
    e = estimate_rate(runs, per_seed)  # type: ignore[arg-type]
    return e.mean, e.interval


def test_rate_intervals_never_leave_zero_to_one() -> None:
    assert _rate([[(0, 50)] * 10, [(0, 40)] * 10]) == (0.0, (0.0, 0.0))
    assert _rate([[(50, 50)] * 10, [(40, 40)] * 10]) == (1.0, (1.0, 1.0))
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.choice([0.001, 0.01, 0.5, 0.99])
        cells = [[(int(rng.binomial(30, p)), 30) for _ in range(10)] for _ in range(2)]
        mean, (low, high) = _rate(cells)  # type: ignore[misc]
        assert 0.0 <= low <= mean <= high <= 1.0


def test_rate_interval_covers_the_true_rate() -> None:
    """Along the axis BATCHES trades (units for the bootstrap against independence of the batches):
    with independent batches the 95% interval holds the true rate in at least 88% of 300 trials."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(300):
        cells = [[(int(rng.binomial(40, 0.08)), 40) for _ in range(BATCHES)] for _ in range(3)]
        _, (low, high) = _rate(cells)  # type: ignore[misc]
        hits += low <= 0.08 <= high
    assert hits >= 0.88 * 300


def test_a_policy_that_drops_gets_a_dropped_column_and_finite_percentiles() -> None:
    from scheduler import registry
    from scheduler.synthetic import random_problem
    from sparseloom.sim import compare
    from sparseloom.sim.report import format_table, results_dict
    from sparseloom.workload import Poisson

    problem = random_problem(5, tasks=2, positions=3, variants=2, processors=2, load=3.0)
    specs = {t.name: Poisson(process="poisson", rate_hz=t.rate_hz) for t in problem.tasks}
    cmp = compare(problem, [registry.create("band-lsf")], specs, Experiment(duration_s=4.0, warmup_s=0.5, seeds=2),
                  progress=False)
    s = cmp.policies["band-lsf"]
    assert s.dropped_rate.mean > 0 and np.isfinite(s.latency_p99_ms.mean)
    table = format_table(cmp)
    assert "dropped %" in table and "inf" not in table
    doc = results_dict(cmp, workload="w", soc="s")
    entry = doc["policies"]["band-lsf"]
    assert entry["dropped_rate"] == pytest.approx(s.dropped_rate.mean)
    for key in ("slo_violation_rate", "dropped_rate"):
        low, high = entry["ci95"][key]
        assert 0.0 <= low <= entry[key] <= high <= 1.0
