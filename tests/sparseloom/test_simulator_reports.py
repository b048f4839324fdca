"""Report writers: the table, results.json keys and values, plots and the Chrome trace."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from sparseloom.sim import SLOChangeEvent, compare
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
        duration_s=20.0,
        warmup_s=2.0,
        seeds=2,
        trace_until_s=1.0,
        slo_changes=[SLOChangeEvent(500.0, "a", latency_ms=5.0)],
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
