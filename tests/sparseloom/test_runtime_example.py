"""examples/two_models.py: two real models at once under SLOs, an SLO change mid-run, statistics.

Runs from an empty cache directory, as CI does on a fresh machine: digits_cnn is trained, the pool
built, every block profiled, the accuracy terms measured and the plan made inside the test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import sparseloom

# build() needs sparseloom.assemble from this same checkout (an installed copy elsewhere may differ).
pytestmark = [pytest.mark.skipif(
    not Path(sparseloom.__file__).with_name("assemble.py").is_file(),
    reason="sparseloom/assemble.py is not in this checkout",
), pytest.mark.wallclock]


def test_two_models_example_runs_and_switches_slo(repo_root: Path, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("two_models", repo_root / "examples" / "two_models.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    stats = example.main(duration_s=4.0, every_s=1.0, progress=False, cache_dir=tmp_path)
    assert (tmp_path / "pools").is_dir()  # built here, from nothing
    out = capsys.readouterr().out
    assert "text SLO 60 ms -> 25 ms" in out and "final:" in out
    assert set(stats.per_task) == {"digits", "text"}
    for task in stats.per_task.values():
        assert task.completed > 0 and task.variant and task.latency_ms.p50 > 0
    assert stats.per_task["text"].latency_slo_ms == 25.0
    assert stats.replans >= 1
    assert stats.peak_resident_mb <= stats.memory_budget_mb
