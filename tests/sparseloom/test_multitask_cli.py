"""``sparseloom switch`` maps workload tasks onto the digits tasks and replays the workload's sequence."""

from __future__ import annotations

from pathlib import Path

from sparseloom.commands.switch import sequences_for, task_mapping
from sparseloom.workload import load_workload


def test_driving_workload_maps_names_and_repeats_its_sequence(repo_root: Path) -> None:
    w = load_workload(repo_root / "workloads" / "scenarios" / "driving.yaml")
    assert task_mapping(w) == {"car": "digit", "traffic_light": "parity", "obstacle": "ge5", "person": "loops"}
    seqs = sequences_for(w, cycles=2, steps=10)
    assert seqs["workload_sequence"] == ["digit", "parity", "digit", "ge5", "loops"] * 2
    assert len(seqs["markov"]) == 10


def test_other_task_names_map_in_sorted_order(repo_root: Path) -> None:
    w = load_workload(repo_root / "workloads" / "scenarios" / "stress.yaml")
    names = sorted(t.name for t in w.tasks)
    assert list(task_mapping(w)) == names
    assert list(task_mapping(w).values()) == ["digit", "ge5", "loops", "parity"][: len(names)]


def test_cli_rejects_a_bad_repeat_count(repo_root: Path, tmp_path: Path) -> None:
    from sparseloom.cli import main

    code = main(["switch", str(repo_root / "workloads" / "scenarios" / "driving.yaml"), "--out", str(tmp_path), "--repeats", "0"])
    assert code == 2
