"""Sealed cache records: a changed byte is found and recomputed, never served; one process computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stitching import sealed


def test_a_record_round_trips_and_any_change_is_a_miss_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    sealed.write(path, {"latency_ms": [1.5, 2.25], "name": "block"})
    assert sealed.read(path) == {"latency_ms": [1.5, 2.25], "name": "block"}
    text = path.read_text()
    path.write_text(text.replace("2.25", "2.75"))  # same length, another number
    with pytest.warns(sealed.SealWarning, match="r.json: altered"):
        assert sealed.read(path) is None
    path.write_text(text[: len(text) // 2])  # torn
    with pytest.warns(sealed.SealWarning, match="not valid JSON"):
        assert sealed.read(path) is None
    assert sealed.read(tmp_path / "absent.json") is None


def test_an_unsealed_record_from_an_older_version_is_sealed_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format_version": 3}))
    assert sealed.read(path) == {"format_version": 3}
    assert set(json.loads(path.read_text())) == {"sealed", "data"}
    path.write_text("[1, 2]")
    with pytest.warns(sealed.SealWarning, match="not a sealed record"):
        assert sealed.read(path) is None
    assert sealed.read(path, legacy=lambda doc: isinstance(doc, list)) == [1, 2]


def test_cached_recomputes_a_bad_record_and_an_undecodable_one(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 41 + len(calls)

    assert sealed.cached(path, compute, lambda v: {"v": v}, lambda d: int(d["v"])) == 42
    assert sealed.cached(path, compute, lambda v: {"v": v}, lambda d: int(d["v"])) == 42 and len(calls) == 1
    sealed.write(path, {"w": 1})  # sealed, but not what the reader expects
    with pytest.warns(sealed.SealWarning, match="unreadable record"):
        assert sealed.cached(path, compute, lambda v: {"v": v}, lambda d: int(d["v"])) == 43


_WORKER = """
import sys, time
from pathlib import Path
from stitching import sealed
def compute():
    with open(sys.argv[2], "a") as log:
        log.write("computed\\n")
    time.sleep(1.0)
    return 7
print(sealed.cached(Path(sys.argv[1]), compute, lambda v: v, int))
"""


def test_two_processes_compute_a_record_once(tmp_path: Path) -> None:
    import stitching

    env = {"PYTHONPATH": str(Path(stitching.__file__).parents[1])}
    log = tmp_path / "log"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "r.json"), str(log)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["7", "7"] and log.read_text().count("computed") == 1
