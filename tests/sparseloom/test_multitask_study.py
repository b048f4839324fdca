"""End to end on a small backbone: real accuracy, replay of every method, switch.json and heat-map."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from stitching.multitask.masks import respects_sparsity
from sparseloom.multitask.replay import (
    METHODS,
    default_sequences,
    markov_sequence,
    replay,
)
from stitching.multitask.setting import Setting, SettingConfig, build_setting
from sparseloom.multitask.study import StudyConfig, run_study, setting_pool_dir
from stitching.multitask.heads import HEAD_CLASSES, masked_weights

SMALL = SettingConfig(backbone="mlp", hidden=(256, 128), epochs=3, tile_size=32, sparsity={"digit": 0.5, "parity": 0.7, "ge5": 0.6, "loops": 0.7})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multitask-cache")


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Setting:
    return build_setting(tmp_path_factory.mktemp("multitask") / "work", SMALL, cache_dir=cache_dir)


def test_tasks_learn_and_masks_respect_targets(setting: Setting) -> None:
    chance = {"digit": 0.1, "parity": 0.5, "ge5": 0.5, "loops": 0.6}
    for t in HEAD_CLASSES:
        assert setting.dense_accuracy[t] > chance[t] + 0.2
        assert respects_sparsity(setting.alignment.masks[t], setting.grids, setting.sparsity[t])
        assert setting.alignment.accuracy[t] >= setting.independent_accuracy[t] - SMALL.tolerance


def test_every_method_installs_the_weights_its_accuracy_claims(setting: Setting) -> None:
    seq = ["digit", "parity", "digit", "ge5", "loops", "digit", "parity"]
    mono_bytes = None
    for method in METHODS:
        records, acc = replay(setting, method, seq, bandwidth_gbps=1.0, preload_budget_bytes=200_000)
        assert len(records) == len(seq) - 1
        family = "independent" if method in ("monolithic", "independent_differential") else "aligned"
        expected = setting.independent_accuracy if family == "independent" else setting.alignment.accuracy
        for t in set(seq):
            assert acc[t] == pytest.approx(expected[t])
        total = sum(r.bytes_loaded for r in records)
        if method == "monolithic":
            mono_bytes = total
        else:
            assert mono_bytes is not None and total < mono_bytes
        if method == "aligned_preload":
            assert all(r.resident_bytes <= 200_000 + max(m.total_bytes() for m in setting.manifests["aligned"].values()) for r in records)


def test_masked_weights_zero_outside_the_mask(setting: Setting) -> None:
    mask = setting.alignment.masks["parity"]
    w = masked_weights(setting.model.weights, mask, setting.tile_size)
    for key in {k for g in setting.grids.values() for k in g.tile_keys()} - mask:
        assert not np.any(w[key.layer][setting.grids[key.layer].slices(key)])


def test_sequences_are_seeded_and_never_repeat_a_task() -> None:
    a = markov_sequence(["p", "q", "r"], 30, seed=3)
    assert a == markov_sequence(["p", "q", "r"], 30, seed=3)
    assert all(x != y for x, y in pairwise(a))
    assert default_sequences(cycles=1)["driving"] == ["digit", "parity", "digit", "ge5", "loops"]


def test_run_study_writes_switch_json_and_heatmap(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = StudyConfig(setting=SMALL, cycles=2, markov_steps=8, layout_repeats=1, replay_repeats=1)
    report = run_study(tmp_path, config, cache_dir=cache_dir, pools_dir=tmp_path / "pools")
    pool = setting_pool_dir(tmp_path / "pools", SMALL)
    assert report["pool_dir"] == str(pool)
    packs = sorted(pool.glob("pool/tiles/*.safetensors"))
    assert packs
    before = {f: f.stat().st_mtime_ns for f in packs}
    # Same configuration again: the masks are found saved (nothing is scored or aligned again), every
    # tile is found in the pool, no pack is added or rewritten.
    import stitching.multitask.setting as setting_module

    def never(*args: object) -> None:
        raise AssertionError("masks computed again for a saved setting")

    monkeypatch.setattr(setting_module, "_score_mask_align", never)
    again = build_setting(pool, SMALL, cache_dir=cache_dir)
    assert again.alignment.masks == {t: frozenset(again.manifests["aligned"][t].tiles) for t in HEAD_CLASSES}
    assert {f: f.stat().st_mtime_ns for f in sorted(pool.glob("pool/tiles/*.safetensors"))} == before
    written = json.loads((tmp_path / "switch.json").read_text())
    assert written["sequences"].keys() == {"driving", "markov"}
    for seq in written["sequences"].values():
        assert set(seq["methods"]) == set(METHODS)
        for m in seq["methods"].values():
            assert m["switch_latency_ms"]["source"] == "measured"
            assert m["switch_latency_ms"]["p95"] >= m["switch_latency_ms"]["median"]
            assert set(m["accuracy"]) <= set(HEAD_CLASSES)
    assert report["read_bandwidth"]["source"] == "measured"
    assert (tmp_path / "jaccard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulator_reads_what_the_replay_reads_and_charges_by_the_measured_costs(setting: Setting) -> None:
    from sparseloom.sim.switching import StorageCosts, simulate_switches
    from stitching.multitask.loading import ReadCurve

    seq = ["digit", "parity", "digit", "ge5", "loops", "digit", "parity"]
    curve = ReadCurve((4096, 1 << 20), (0.1, 1.1), 1)
    costs = StorageCosts(curve, dict.fromkeys(METHODS, 0.05), 0.002, max_gap_bytes=0)
    budget = 200_000
    for method in METHODS:
        measured, _ = replay(setting, method, seq, bandwidth_gbps=1.0, preload_budget_bytes=budget, measure_accuracy=False)
        modelled = simulate_switches(setting, method, seq, costs, budget)
        assert [(m.src, m.dst) for m in modelled] == [(r.src, r.dst) for r in measured]
        # With no gap merged, a run holds exactly its tiles' bytes: the model reads what the replay read.
        assert [m.bytes_read for m in modelled] == [r.bytes_loaded for r in measured]
        assert [m.reads for m in modelled] == [r.reads for r in measured]
        assert [m.tiles for m in modelled] == [r.tiles_loaded for r in measured]
        assert [m.preload_bytes for m in modelled] == [r.preload_bytes for r in measured]
        for m in modelled:
            # One pack file here: a switch's requests are in flight together and cost the curve at their total.
            assert m.storage_ms == pytest.approx(curve.read_ms(m.bytes_read))
            assert m.storage_ms <= m.serial_ms + 1e-12
            assert m.modelled_ms >= 0.05 + m.storage_ms - 1e-9
    # A switch that reads nothing costs the fixed cost alone; one that reads costs more.
    pre = simulate_switches(setting, "aligned_preload", seq, costs, 10**9)
    assert any(m.reads == 0 and m.modelled_ms == 0.05 for m in pre)


def test_requests_in_flight_together_cost_one_stream_and_tile_work_overlaps_them() -> None:
    from sparseloom.sim.switching import Request, StorageCosts
    from stitching.multitask.loading import ReadCurve

    curve = ReadCurve((4096, 1 << 20), (0.1, 1.1), 1)
    costs = StorageCosts(curve, {"m": 0.05}, tile_ms=0.001, max_gap_bytes=0)
    half = [Request("pack-0", 1 << 19), Request("pack-0", 1 << 19)]
    # Two halves announced together cost one request of their total, not two cold latencies...
    assert costs.storage_ms(half) == pytest.approx(curve.read_ms(1 << 20))
    assert costs.serial_ms(half) == pytest.approx(2 * curve.read_ms(1 << 19))
    assert costs.storage_ms(half) < costs.serial_ms(half)
    # ...while requests to two files are announced file by file, one after the other.
    apart = [Request("pack-0", 1 << 19), Request("pack-1", 1 << 19)]
    assert costs.storage_ms(apart) == pytest.approx(costs.serial_ms(apart))
    # The per-tile work runs while the reads are in flight: the longer of the two is charged.
    storage = costs.storage_ms(half)
    assert costs.charge_ms("m", storage, 10) == pytest.approx(0.05 + storage)
    assert costs.charge_ms("m", storage, 10_000) == pytest.approx(0.05 + 10.0)
    # Working out the runs comes before the first read: it adds, per tile missing, and never overlaps.
    planned = StorageCosts(curve, {"m": 0.05}, tile_ms=0.001, max_gap_bytes=0, plan_ms=0.0002)
    assert planned.charge_ms("m", storage, 10) == pytest.approx(0.05 + 0.002 + storage)
    assert planned.charge_ms("m", storage, 0) == pytest.approx(0.05 + storage)


def test_planning_costs_per_tile_missing_and_the_fixed_cost_excludes_it(setting: Setting) -> None:
    from sparseloom.multitask.replay import measure_install_ms, measure_plan_ms

    plan = measure_plan_ms(setting, repeats=2)
    assert 0.0 < plan < 0.01  # measured: 0.2 us per tile on digits_resnet18; far under a tile's read
    # The replay counts the tiles each switch brings in, as the model does.
    seq = ["digit", "parity", "ge5", "digit"]
    records, _ = replay(setting, "aligned_differential", seq, 1.0, 0, measure_accuracy=False)
    assert all(r.tiles_loaded > 0 for r in records if r.bytes_loaded)
    mono, _ = replay(setting, "monolithic", seq, 1.0, 0, measure_accuracy=False)
    assert all(r.tiles_loaded == 0 for r in mono)
    # The fixed cost is what is left after planning: charging more per tile leaves less of it.
    without, heavy = measure_install_ms(setting, 0.0, switches=4), measure_install_ms(setting, 1.0, switches=4)
    assert heavy["aligned_differential"] < without["aligned_differential"]


def test_the_read_curve_interpolates_and_extends_its_last_slope() -> None:
    from stitching.multitask.loading import ReadCurve

    curve = ReadCurve((4096, 65536), (0.1, 0.4), 5)
    assert curve.read_ms(0) == 0.0
    assert curve.read_ms(4096) == pytest.approx(0.1)
    assert curve.read_ms((4096 + 65536) // 2) == pytest.approx(0.25)
    assert curve.read_ms(65536 + 61440) == pytest.approx(0.7)
