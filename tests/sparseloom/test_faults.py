"""Faults: SIGKILL at seeded random points during pool build, profile, simulate and switch leaves
no torn file, and the next run completes; a full disk and a read-only cache exit 2 and lose nothing.

``SPARSELOOM_KILL_POINTS`` sets the points per command (default 8: a pool build or simulate point
costs about 1 s, and 20 kept the suite past its ten minutes on the 2-core host). A profile point
costs about 6 s (the command imports TVM each time) and a switch point some 40 s (the study
re-measures its masks' accuracy on every run), so they have their own counts:
``SPARSELOOM_PROFILE_KILL_POINTS`` (default 3) and ``SPARSELOOM_SWITCH_KILL_POINTS`` (default 1);
docs/reliability.md gives 20-point runs of each.
``profile`` runs on a modelled SoC here, so a point costs what the command does with the profile
(NPU offload planning in worker processes, the profile record), not the host measurement's fixed
repeats (8 s a point).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sparseloom import killing
from tests.sparseloom.test_plan_simulate_cli import WORKLOAD

POINTS = int(os.environ.get("SPARSELOOM_KILL_POINTS", "8"))
PROFILE_POINTS = int(os.environ.get("SPARSELOOM_PROFILE_KILL_POINTS", "3"))
SWITCH_POINTS = int(os.environ.get("SPARSELOOM_SWITCH_KILL_POINTS", "1"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workload file and a cache holding its trained model, pool and profile, and the switch study's."""
    root = tmp_path_factory.mktemp("faults")
    (root / "w.yaml").write_text(WORKLOAD.replace("MINACC", "0.5"))
    env = {"SPARSELOOM_CACHE": str(root / "cache")}
    assert killing.run(["simulate", str(root / "w.yaml"), "--out", str(root / "out"), "--no-progress"], env) == 0
    return root


def _reset(src: Path, dst: Path, drop: Callable[[Path], None] = lambda p: None) -> Callable[[], None]:
    def prepare() -> None:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        drop(dst)
    return prepare


def _report(result: killing.Campaign, points: int = POINTS) -> None:
    print(result.line())
    assert result.points == points
    assert result.torn_after_kill == [] and result.torn_after_rerun == []
    assert result.reruns_ok == points
    assert result.temporaries_after_rerun == 0 and result.orphans == 0


def test_killed_pool_builds(base: Path, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    argv = ["pool", "build", str(base / "w.yaml"), "--out", str(pool), "--cache", str(base / "cache"),
            "--no-progress"]
    env = {"SPARSELOOM_CACHE": str(base / "cache")}
    span = killing.timed(argv, env)

    def prepare() -> None:
        shutil.rmtree(pool, ignore_errors=True)
    _report(killing.campaign("pool build", argv, env, prepare, [pool], POINTS, seed=1, span_s=span))


def test_killed_profiles(base: Path, tmp_path: Path, repo_root: Path) -> None:
    cache = tmp_path / "cache"

    def drop(root: Path) -> None:
        for profiles in root.rglob("profiles"):  # the pool stays: its writes are the pool build test's
            shutil.rmtree(profiles)
    prepare = _reset(base / "cache", cache, drop)
    prepare()
    argv = ["profile", str(base / "w.yaml"), "--soc", str(repo_root / "workloads" / "socs" / "jetson_orin_agx.yaml"),
            "--cache", str(cache), "--no-progress"]
    env = {"SPARSELOOM_CACHE": str(cache)}
    span = killing.timed(argv, env)
    _report(killing.campaign("profile", argv, env, prepare, [cache], PROFILE_POINTS, seed=2, span_s=span),
            PROFILE_POINTS)


def test_killed_simulations(base: Path, tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    prepare_cache = _reset(base / "cache", cache)

    def prepare() -> None:
        prepare_cache()
        shutil.rmtree(out, ignore_errors=True)
    prepare()
    argv = ["simulate", str(base / "w.yaml"), "--out", str(out), "--cache", str(cache), "--no-progress"]
    env = {"SPARSELOOM_CACHE": str(cache)}
    span = killing.timed(argv, env)
    _report(killing.campaign("simulate", argv, env, prepare, [cache, out], POINTS, seed=3, span_s=span))


def test_killed_switches(base: Path, tmp_path: Path, repo_root: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "switch"
    argv = ["switch", str(repo_root / "workloads" / "scenarios" / "driving.yaml"), "--out", str(out), "--cache",
            str(cache), "--cycles", "1", "--steps", "4", "--repeats", "1", "--backbone", "mlp"]
    env = {"SPARSELOOM_CACHE": str(cache)}
    # The first run trains the study's backbone; each point starts from it, with no tile pools.
    span = killing.timed(argv, env)
    warm = tmp_path / "warm"
    shutil.copytree(cache, warm)

    def drop(root: Path) -> None:
        for pools in root.glob("pools/multitask-*"):
            shutil.rmtree(pools)
    prepare_cache = _reset(warm, cache, drop)

    def prepare() -> None:
        prepare_cache()
        shutil.rmtree(out, ignore_errors=True)
    _report(killing.campaign("switch", argv, env, prepare, [cache, out], SWITCH_POINTS, seed=4, span_s=span),
            SWITCH_POINTS)


def _namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True,
                              check=False).returncode == 0
    except FileNotFoundError:
        return False


storage = pytest.mark.skipif(not _namespaces(), reason="needs unshare with user namespaces to mount a tmpfs")


def _in_namespace(mode: str, cache: Path, out: Path, argv: list[str], repo_root: Path) -> dict:
    import json

    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m",
                           "tests.sparseloom.storage_faults", mode, str(cache), str(out), "--", *argv],
                          capture_output=True, text=True, check=False, cwd=repo_root, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _unharmed(result: dict) -> None:
    print(result["stderr"].strip().splitlines()[-1] if result["stderr"].strip() else "(no message)")
    assert result["lost_or_changed"] == [] and result["torn"] == [] and result["temporaries"] == 0, result
    assert "Traceback" not in result["stderr"], result["stderr"]


@storage
def test_a_full_disk_exits_2_and_loses_nothing(base: Path, tmp_path: Path, repo_root: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(base / "cache", cache)
    more = tmp_path / "more.yaml"
    more.write_text((base / "w.yaml").read_text().replace(
        "      - {pattern: structured, levels: [0.5]}",
        "      - {pattern: structured, levels: [0.3, 0.5, 0.7]}\n      - {pattern: unstructured, levels: [0.5]}\n"
        "      - {pattern: int8}"))
    result = _in_namespace("full", cache, tmp_path / "out", ["pool", "build", str(more), "--out",
                                                             str(cache / "pool2"), "--no-progress"], repo_root)
    assert result["code"] == 2 and "the disk is full" in result["stderr"], result
    _unharmed(result)


@storage
def test_a_read_only_cache_serves_what_it_holds_and_refuses_to_write_with_exit_2(
        base: Path, tmp_path: Path, repo_root: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(base / "cache", cache)
    served = _in_namespace("readonly", cache, tmp_path / "out", ["simulate", str(base / "w.yaml"), "--out",
                                                                 str(tmp_path / "out"), "--no-progress"], repo_root)
    assert served["code"] == 0, served
    _unharmed(served)
    for profiles in cache.rglob("profiles"):
        shutil.rmtree(profiles)
    refused = _in_namespace("readonly", cache, tmp_path / "out", ["profile", str(base / "w.yaml"), "--repeats", "3",
                                                                  "--no-progress"], repo_root)
    assert refused["code"] == 2 and "read-only" in refused["stderr"], refused
    _unharmed(refused)
