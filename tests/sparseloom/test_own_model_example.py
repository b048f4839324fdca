"""examples/own_model.py: a user's residual CNN, trained here, through pool, structured variants
measured by the user's evaluate, stitched variants, plan, simulate and a short real run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def test_own_model_example_runs_end_to_end(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("own_model", repo_root / "examples" / "own_model.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(duration_s=2.0, cache_dir=tmp_path, progress=False)
    printed = capsys.readouterr().out
    assert out["dense"] > 0.95  # trained on real images, judged on held-out ones
    terms = out["terms"]
    # Every whole variant measured by the user's top1, the dense one at the model's own accuracy.
    assert len(terms.measured) >= 4 and terms.base_accuracy == pytest.approx(out["dense"])
    assert "structured-0.125" in printed and "stitched variants: 256" in printed
    route = out["plan"].routes["digits"]
    assert route.accuracy is not None and route.accuracy >= out["dense"] - 0.05
    assert set(out["comparison"].policies) == {"sparseloom", "sv-ao-np", "sv-lo-np", "av-np"}
    stats = out["stats"].per_task["digits"]
    assert stats.completed > 0 and out["served_top1"] > 0.9
