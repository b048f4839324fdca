"""``sparseloom pool build|ls|verify`` and ``sparseloom stitch``: exit codes, output, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseloom.cli import main


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("pools") / "digits"
    rc = main(["pool", "build", "digits_cnn", "--out", str(out), "--blocks", "2",
               "--variants", "structured-0.5,int8", "--cache", str(cache), "--no-progress"])
    assert rc == 0
    return out, cache


def test_ls_lists_models_variants_and_blocks(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = built
    assert main(["pool", "ls", str(out)]) == 0
    text = capsys.readouterr().out
    assert "digits_cnn (zoo digits_cnn): 2 blocks x 3 variants" in text
    assert "structured-0.5" in text and "6 unique of 6 blocks" in text
    assert main(["pool", "ls", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["blocks"]) == 6 and data["models"]["digits_cnn"]["variants"] == ["dense", "structured-0.5", "int8"]


def test_verify_is_ok_then_names_the_bad_file(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, _ = built
    assert main(["pool", "verify", str(out)]) == 0
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = sorted((copy / "blocks").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    assert main(["pool", "verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "truncated" in err and "Traceback" not in err


def test_stitch_json_lists_candidates(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, cache = built
    assert main(["stitch", str(out), "--model", "digits_cnn", "--json", "--cache", str(cache), "--no-progress",
                 "--eval-limit", "200"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["candidates"]) == 9
    assert {c["accuracy_source"] for c in data["candidates"]} <= {"measured", "estimated"}
    assert any(c["pareto"]["flops"] for c in data["candidates"])
    assert data["estimator"]["terms"][0].keys() == {"position", "variant", "delta"}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["stitch", "{out}", "--model", "nope"], "not in the pool"),
        (["stitch", "{missing}", "--model", "digits_cnn"], "manifest.json is missing"),
        (["pool", "ls", "{missing}"], "manifest.json is missing"),
        (["pool", "build", "no_such_model", "--out", "{missing}"], "a workload YAML file or a zoo model"),
        (["pool", "build", "digits_cnn", "--out", "{missing}", "--variants", "sparse-9"], "cannot read variant name"),
        (["pool", "build", "digits_cnn", "--out", "{missing}", "--blocks", "9", "--cache", "{cache}"], "cannot cut 4 units into 9"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    out, cache = built
    args = [a.format(out=out, missing=tmp_path / "none", cache=cache) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_build_from_a_workload_file(built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cache = built
    wl = tmp_path / "w.yaml"
    wl.write_text(
        "models:\n"
        "  - name: digits\n    zoo: digits_cnn\n    partition: {boundaries: [conv2]}\n"
        "    variants:\n      - {pattern: unstructured, levels: [0.5]}\n      - {pattern: '2:4'}\n"
    )
    out = tmp_path / "pool"
    assert main(["pool", "build", str(wl), "--out", str(out), "--cache", str(cache), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["pool", "ls", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"]["digits"]["variants"] == ["dense", "unstructured-0.5", "2:4"]
    assert data["models"]["digits"]["unit_names"] == [["conv1", "conv2"], ["conv3", "head"]]
    wl.write_text("models:\n  - name: mine\n    module: 'no_such_pkg.mod:make'\n    input_shape: [1, 3]\n")
    assert main(["pool", "build", str(wl), "--out", str(out)]) == 2
    assert "cannot import model factory 'no_such_pkg.mod:make'" in capsys.readouterr().err
