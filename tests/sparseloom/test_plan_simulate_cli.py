"""plan, simulate, sweep and profile end to end on a small host workload (torch executor: nothing to compile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseloom.cli import main

WORKLOAD = """\
soc:
  name: tiny-host
  memory_mb: 4096
  storage_read_gbps: 1.0
  transfer: {latency_us: 0, bandwidth_gbps: 10}
  source: "test host"
  processors:
    - name: cpu
      kind: cpu
      target: {kind: llvm}
      executor: torch
      peak_gops: {fp32: 50}
      memory_bandwidth_gbps: 10
      source: "test"
models:
  - name: digits
    zoo: digits_cnn
    partition: {blocks: 2}
    variants:
      - {pattern: structured, levels: [0.5]}
tasks:
  - {name: classify, model: digits, slo: {latency_ms: 50, min_accuracy: MINACC}, arrival: {process: poisson, rate_hz: 100}}
scenario: {name: tiny, duration_s: 3, warmup_s: 0.5, seeds: 2, memory_budget_mb: 64, policies: [sparseloom, sv-ao-np]}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    (root / "ok.yaml").write_text(WORKLOAD.replace("MINACC", "0.5"))
    (root / "infeasible.yaml").write_text(WORKLOAD.replace("MINACC", "0.9999"))
    return root, root / "cache"


def test_plan_json_names_block_and_processor_per_position(setup: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = setup
    assert main(["plan", str(root / "ok.yaml"), "--cache", str(cache), "--no-progress", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plan = data["plan"]
    assert plan["feasible"] is True and plan["solve"]["status"] == "optimal"
    blocks = plan["tasks"]["classify"]["blocks"]
    assert [b["position"] for b in blocks] == [0, 1]
    assert all(b["processor"] == "cpu" and len(b["digest"]) == 64 for b in blocks)


def test_infeasible_plan_explains_and_exits_3(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = setup
    assert main(["plan", str(root / "infeasible.yaml"), "--cache", str(cache), "--no-progress"]) == 3
    out = capsys.readouterr().out
    assert "min accuracy 0.9999 is unreachable" in out and "classify" in out


def test_simulate_writes_results_plots_and_trace(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = setup
    out = root / "sim"
    assert main(["simulate", str(root / "ok.yaml"), "--cache", str(cache), "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["soc"] == "tiny-host" and len(results["seeds"]) == 2
    for name in ("sparseloom", "sv-ao-np"):
        p = results["policies"][name]
        assert 0.0 <= p["slo_violation_rate"] <= 1.0 and p["throughput_rps"] > 50
        assert p["latency_ms"]["p50"] <= p["latency_ms"]["p99"]
        assert set(p["decision_us"]) >= {"p50", "p99"}
    assert (out / "latency_cdf.png").stat().st_size > 1000 and (out / "violations.png").stat().st_size > 1000
    trace = json.loads((out / "trace_sparseloom.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    assert "sparseloom" in capsys.readouterr().out


def test_simulate_lists_policies_and_rejects_unknown(setup: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = setup
    assert main(["simulate", "--policies"]) == 0
    assert "band-heft" in capsys.readouterr().out.split()
    assert main(["simulate", str(root / "ok.yaml"), "--policies", "nope", "--cache", str(cache)]) == 2
    assert "--policies" in capsys.readouterr().err


def test_sweep_over_load(setup: tuple[Path, Path]) -> None:
    root, cache = setup
    out = root / "sweep"
    assert main(["sweep", str(root / "ok.yaml"), "--cache", str(cache), "--no-progress", "--values", "1,4",
                 "--workers", "1", "--seeds", "1", "--out", str(out)]) == 0
    data = json.loads((out / "sweep.json").read_text())
    thr = [p["policies"]["sparseloom"]["throughput_rps"] for p in data["points"]]
    assert thr[1] > 2.5 * thr[0]  # four times the load is served
    assert (out / "sweep.png").is_file()


def test_profile_show_marks_measured(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = setup
    file = root / "profile.json"
    assert main(["profile", str(root / "ok.yaml"), "--cache", str(cache), "--no-progress", "--out", str(file),
                 "--repeats", "3"]) == 0
    capsys.readouterr()
    assert main(["profile", "show", str(file)]) == 0
    out = capsys.readouterr().out
    assert "4 measured, 0 modelled" in out
    assert main(["profile", "show", str(root / "missing.json")]) == 2


def test_demo_runs_simulate_on_the_default_workload_with_every_flags_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import argparse

    from sparseloom.commands import demo, simulate

    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(simulate, "run", lambda ns: seen.append(ns) or 0)
    assert main(["demo", "--out", str(tmp_path / "d"), "--cache", str(tmp_path / "c")]) == 0
    (ns,) = seen
    assert ns.workload == str(demo.DEFAULT) and ns.out == tmp_path / "d" and ns.cache == tmp_path / "c"
    # Every option simulate's parser defines reaches it (a flag added there cannot break the demo).
    assert ns.engine == "process" and ns.address is None and ns.trace_s == simulate.TRACE_S and ns.json is False
