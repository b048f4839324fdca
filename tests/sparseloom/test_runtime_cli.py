"""``sparseloom run`` and ``sparseloom calibrate``: bad input exits 2 before any work; real runs print data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparseloom
from sparseloom.cli import main

pytestmark = pytest.mark.wallclock  # drives the real runtime on the wall clock: run alone, not beside other tests

HOST = Path("workloads") / "scenarios" / "host_calibrate.yaml"


@pytest.mark.parametrize("command", ["run", "calibrate"])
def test_bad_flags_exit_2_with_a_located_message(
    command: str, repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = str(repo_root / HOST)
    assert main([command, workload, "--duration", "0", "--cache", str(tmp_path)]) == 2
    assert "--duration: expected seconds above zero" in capsys.readouterr().err
    assert main([command, workload, "--policy", "fastest", "--cache", str(tmp_path)]) == 2
    assert "--policy: expected one of sparseloom" in capsys.readouterr().err
    assert main([command, str(tmp_path / "missing.yaml"), "--cache", str(tmp_path)]) == 2


def test_calibrate_refuses_probe_runs_of_no_length(repo_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-1", "nan"):
        assert main(["calibrate", str(repo_root / HOST), "--probe-seconds", bad, "--cache", str(tmp_path)]) == 2
        assert "--probe-seconds: expected seconds in (0, 3600]" in capsys.readouterr().err


def test_run_and_calibrate_on_the_host(repo_root: Path, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    if not Path(sparseloom.__file__).with_name("assemble.py").is_file():
        pytest.skip("sparseloom/assemble.py is not in this checkout (run and calibrate assemble the workload)")
    workload = str(repo_root / HOST)
    assert main(["run", workload, "--duration", "2", "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["source"] == "measured" and data["result"]["requests"] > 0
    assert data["stats"]["per_task"]["digits"]["completed"] > 0
    profile = tmp_path / "profile.json"
    # Short probe runs (2 s each side at 200 requests/s) keep the test short; the flag is honoured.
    assert main(["calibrate", workload, "--duration", "3", "--probe-seconds", "2", "--json", "--no-progress",
                 "--write-profile", str(profile)]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["real"]["source"] == "measured" and cal["simulated"]["source"].startswith("modelled")
    for error in ("error_profile", "error_adjusted", "error_in_sample"):
        assert set(cal[error]) == {"p50_error_pct", "p99_error_pct", "violation_error_points", "throughput_error_pct"}
    overhead = cal["overhead_ms"]
    assert overhead["source"] == "measured" and 0 < overhead["probe_requests"] <= 2 * 2 * 200 * 1.3
    assert set(overhead["per_task_median_by_gap_ms"]) == {"digits"} and overhead["per_task_median_by_gap_ms"]["digits"]["warm"]
    assert cal["corrections"] and all(c["measured_ms"] > 0 for c in cal["corrections"])
    written = json.loads(profile.read_text())
    assert any(e["source"] == "measured" and "sparseloom calibrate" in e["note"] for e in written["entries"])
