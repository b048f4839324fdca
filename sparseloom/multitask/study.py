"""The switch study end to end: build the setting, align, replay every method, write ``switch.json``.

This is what ``sparseloom switch`` and ``benchmarks/multitask_switch.py`` run. Every number in
the report is measured on this host (file I/O with the page cache evicted, held-out accuracy) or
modelled from the measured read bandwidth, and says which.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparseloom.multitask.plots import plot_jaccard
from sparseloom.multitask.replay import (
    METHODS,
    PRELOADERS,
    compare_layouts,
    compare_preloaders,
    default_sequences,
    differential_bytes,
    max_gap_bytes,
    measure_install_ms,
    measure_plan_ms,
    measure_tile_ms,
    run_sequences,
)
from sparseloom.sim.switching import ModelledSwitch, StorageCosts, simulate_switches
from stitching.atomic import write_json
from stitching.multitask.backbone import backbone_bytes
from stitching.multitask.loading import measure_read_bandwidth, measure_read_curve, measure_read_latency
from stitching.multitask.masks import (
    jaccard_matrix,
    mean_pairwise_jaccard,
    respects_sparsity,
)
from stitching.multitask.setting import Setting, SettingConfig, build_setting
from stitching.multitask.heads import DRIVING_HEADS

POOL_LAYOUT = 3  # one pool for both mask families, usage groups ordered by manifest.group_order


@dataclass(frozen=True)
class StudyConfig:
    setting: SettingConfig = field(default_factory=SettingConfig)
    cycles: int = 6
    markov_steps: int = 40
    markov_seed: int = 0
    preload_budget_mb: float | None = None  # None: the largest aligned task model
    # Budget for the pre-loader comparison; None: the mean differential set between two aligned tasks,
    # so about one likely next task fits and the choice of what to pre-load matters.
    tight_budget_mb: float | None = None
    bandwidth_gbps: float | None = None  # None: measure the pool's cold read bandwidth
    layout_repeats: int = 3
    replay_repeats: int = 3
    sequences: dict[str, list[str]] | None = None  # in model task names; None: driving + random Markov


def _alignment_report(setting: Setting) -> dict[str, Any]:
    names = sorted(setting.independent)
    aligned = setting.alignment.masks
    tasks = {}
    for t in names:
        tasks[t] = {
            "driving_name": next(k for k, v in DRIVING_HEADS.items() if v == t),
            "sparsity_target": setting.sparsity[t],
            "tiles_kept": {"independent": len(setting.independent[t]), "aligned": len(aligned[t])},
            "respects_sparsity": respects_sparsity(aligned[t], setting.grids, setting.sparsity[t]),
            "core_fraction": setting.alignment.core_fraction[t],
            "accuracy": {
                "dense": setting.dense_accuracy[t],
                "independent_mask": setting.independent_accuracy[t],
                "aligned_mask": setting.alignment.accuracy[t],
                "alignment_cost": setting.independent_accuracy[t] - setting.alignment.accuracy[t],
                "source": "measured (held-out digits split)",
            },
            "model_bytes": {
                "independent": setting.manifests["independent"][t].total_bytes(),
                "aligned": setting.manifests["aligned"][t].total_bytes(),
            },
        }
    return {
        "tolerance": setting.alignment.tolerance,
        "evaluations": setting.alignment.evaluations,
        "tasks": tasks,
        "jaccard": {
            "names": names,
            "independent": jaccard_matrix(setting.independent, names),
            "aligned": jaccard_matrix(aligned, names),
            "mean_pairwise": {
                "independent": mean_pairwise_jaccard(setting.independent, names),
                "aligned": mean_pairwise_jaccard(aligned, names),
            },
        },
    }


def setting_pool_dir(pools_dir: Path, config: SettingConfig) -> Path:
    """Where the tile pools of one setting live: ``pools_dir/multitask-<key of the configuration>``.

    The same configuration gives the same masks and tiles, so a later run finds every tile
    already stored (content-addressed) and adds no pack. ``POOL_LAYOUT`` is in the key so a
    change of layout never reuses packs written in an older order.
    """
    text = json.dumps({"config": asdict(config), "layout": POOL_LAYOUT}, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return pools_dir / f"multitask-{key}"


def run_study(
    out_dir: Path, config: StudyConfig | None = None, cache_dir: Path | None = None, pools_dir: Path | None = None
) -> dict[str, Any]:
    """Run everything, write ``out_dir/switch.json`` and ``out_dir/jaccard.png``; return the report.

    The tile pools go to :func:`setting_pool_dir` under ``pools_dir`` (the project's pool
    directory), or to ``out_dir/work`` when none is given.
    """
    config = config or StudyConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = setting_pool_dir(pools_dir, config.setting) if pools_dir is not None else out_dir / "work"
    setting = build_setting(work, config.setting, cache_dir)
    alignment = _alignment_report(setting)
    plot_jaccard(
        out_dir / "jaccard.png",
        alignment["jaccard"]["names"],
        alignment["jaccard"]["independent"],
        alignment["jaccard"]["aligned"],
    )
    # Sequential cold reads of every pool and monolithic file: the storage's best-case bandwidth.
    every_file = setting.pool.files() + list(setting.monolithic.values())
    measured = measure_read_bandwidth(every_file)
    latency = measure_read_latency(every_file)
    bandwidth = config.bandwidth_gbps or measured.bandwidth_gbps
    budget = (
        int(config.preload_budget_mb * 1e6)
        if config.preload_budget_mb is not None
        else max(m.total_bytes() for m in setting.manifests["aligned"].values())
    )
    diffs = differential_bytes(setting.manifests["aligned"])
    tight = (
        int(config.tight_budget_mb * 1e6) if config.tight_budget_mb is not None else int(sum(diffs.values()) / len(diffs))
    )
    sequences = config.sequences or default_sequences(config.cycles, config.markov_steps, config.markov_seed)
    gap = max_gap_bytes(latency.latency_ms, bandwidth)
    # The storage's costs drift from minute to minute on a shared host, so the simulator's are
    # measured again before each replay round and that round is modelled with them.
    replay_costs: list[StorageCosts] = []
    tight_costs: list[StorageCosts] = []

    def costs_now() -> StorageCosts:
        plan = measure_plan_ms(setting)
        return StorageCosts(measure_read_curve(every_file), measure_install_ms(setting, plan), measure_tile_ms(setting), gap, plan)

    def before_replay_round() -> float:
        replay_costs.append(costs_now())
        return config.bandwidth_gbps or measure_read_bandwidth(every_file, repeats=3).bandwidth_gbps

    report: dict[str, Any] = {
        "host": platform.node(),
        "pool_dir": str(work),
        "model": {
            "backbone": setting.model.name,
            "backbone_mb": backbone_bytes(setting.model) / 1e6,
            "tile_size": setting.tile_size,
            "tiles_in_backbone": sum(g.rows * g.cols for g in setting.grids.values()),
        },
        "read_bandwidth": asdict(measured),
        "read_latency": asdict(latency),
        "modelled_bandwidth_gbps": bandwidth,
        "preload_budget_mb": budget / 1e6,
        "alignment": alignment,
        "layouts": compare_layouts(setting, config.layout_repeats),
        "sequences": run_sequences(
            setting, sequences, bandwidth, budget, config.replay_repeats, latency.latency_ms, before_replay_round
        ),
        "preloaders_at_tight_budget": compare_preloaders(
            setting, sequences, bandwidth, tight, config.replay_repeats, latency.latency_ms,
            lambda: tight_costs.append(costs_now()),
        ),
        "config": asdict(config),
    }
    report["simulated"] = simulated_switches(
        setting, sequences, (replay_costs, tight_costs), config.replay_repeats, (budget, tight), report
    )
    write_json(out_dir / "switch.json", report)
    return report


def _agreement(modelled: list[list[ModelledSwitch]], measured: dict[str, Any]) -> dict[str, Any]:
    """Modelled against measured switch times, round by round (each round with its own costs)."""
    per_round = [float(np.mean([m.modelled_ms for m in rs])) for rs in modelled]
    mean = float(np.mean(per_round))
    storage = float(np.mean([m.storage_ms for rs in modelled for m in rs]))
    serial = float(np.mean([m.serial_ms for rs in modelled for m in rs]))
    one_request = float(np.mean([m.one_request_ms for rs in modelled for m in rs]))
    every = [m for rs in modelled for m in rs]
    return {
        "modelled_ms": {"mean": mean, "mean_per_round": per_round},
        "measured_ms": {"mean": measured["mean"], "mean_per_round": measured["mean_per_round"]},
        "error": {
            "mean": mean / measured["mean"] - 1.0,
            "per_round": [a / b - 1.0 for a, b in zip(per_round, measured["mean_per_round"], strict=True)],
        },
        # Measured switch time over the time the storage takes for the same requests, in flight
        # together: the I/O floor of this layout on this storage (None when nothing is read on the
        # critical path); and over the same requests one after another.
        "io_floor_ratio": measured["mean"] / storage if storage > 0 else None,
        "serial_ratio": measured["mean"] / serial if serial > 0 else None,
        # Over the storage's time for each switch's bytes in one request (the read curve): the I/O
        # limit of any loader on this storage, whatever its layout.
        "one_request_ratio": measured["mean"] / one_request if one_request > 0 else None,
        "bytes_read_per_switch": float(np.mean([m.bytes_read for m in every])),
        "reads_per_switch": float(np.mean([m.reads for m in every])),
    }


def simulated_switches(
    setting: Setting,
    sequences: dict[str, list[str]],
    costs: tuple[list[StorageCosts], list[StorageCosts]],
    repeats: int,
    budgets: tuple[int, int],
    report: dict[str, Any],
) -> dict[str, Any]:
    """The simulator's modelled switch times beside the measured ones, for every method on every
    sequence and for the pre-loaders at the budget that binds (``sparseloom.sim.switching``); each
    replay round is modelled with the costs measured just before it (``costs``: of the replays at
    the study's budget, then of those at the binding one, in sequence order)."""
    replay_costs, tight_costs = costs
    budget, tight = budgets
    out: dict[str, Any] = {
        "costs_per_round": {"replay": [asdict(c) for c in replay_costs], "tight": [asdict(c) for c in tight_costs]},
        "source": "modelled: per tile from the pool's layout; fixed cost + planning per tile missing + the longer of the measured cold read time "
                  "of each file's requests (in flight together) and a software cost per tile",
    }
    for i, (name, seq) in enumerate(sequences.items()):
        rounds = replay_costs[i * repeats : (i + 1) * repeats]
        tight_rounds = tight_costs[i * repeats : (i + 1) * repeats]
        measured = report["sequences"][name]["methods"]
        row = {
            m: _agreement([simulate_switches(setting, m, seq, c, budget) for c in rounds], measured[m]["switch_latency_ms"])
            for m in METHODS
        }
        for p in PRELOADERS:
            got = [simulate_switches(setting, "aligned_preload", seq, c, tight, p) for c in tight_rounds]
            row[f"aligned_preload@tight/{p}"] = _agreement(got, report["preloaders_at_tight_budget"][name][p]["switch_latency_ms"])
        out[name] = row
    return out
