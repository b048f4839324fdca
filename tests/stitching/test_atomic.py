"""Atomic writes: a killed writer's temporary file is removed by the next write, a live one's never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stitching.atomic import remove_stale, write_bytes


def test_the_next_write_removes_a_dead_writers_temporary_and_keeps_a_live_ones(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    gone = tmp_path / f".out.json.{dead.stdout.strip()}.abc123.tmp"
    live = tmp_path / f".out.json.{os.getpid()}.def456.tmp"
    other = tmp_path / f".other.json.{dead.stdout.strip()}.ghi789.tmp"
    for p in (gone, live, other):
        p.write_bytes(b"half a write")
    write_bytes(tmp_path / "out.json", b"{}")
    assert (tmp_path / "out.json").read_bytes() == b"{}"
    assert not gone.exists() and live.exists() and other.exists()  # other files' temporaries wait for theirs
    assert remove_stale(tmp_path) == 1 and not other.exists() and live.exists()
