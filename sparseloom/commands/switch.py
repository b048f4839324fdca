"""``sparseloom switch WORKLOAD [--out DIR]``: replay a task sequence under four loading methods.

Each of the workload's tasks is served by one of the study's four digits heads (driving names
``car``/``traffic_light``/``obstacle``/``person`` by their fixed mapping, other names in sorted
order). Its ``scenario.transitions`` (a sequence, repeated ``--cycles`` times, or a Markov matrix)
is replayed together with a random Markov sequence seeded by ``scenario.seed``. Writes
``DIR/switch.json`` and ``DIR/jaccard.png``; the tile pools live in the cache's pool directory
(``CACHE/pools/multitask-<key>/pool``), content-addressed, so a second run stores no tile again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sparseloom.commands.common import cache_dir
from sparseloom.errors import InputError, Complaint
from sparseloom.workload import Workload, load_workload
from sparseloom.multitask.replay import markov_sequence
from sparseloom.multitask.study import StudyConfig, run_study
from stitching.multitask.heads import DRIVING_HEADS, HEAD_CLASSES
from stitching.multitask.setting import BACKBONES, SettingConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "switch",
        help="replay task switches: monolithic vs differential vs aligned vs pre-loading",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("workload", type=Path, metavar="WORKLOAD", help="workload YAML with tasks and transitions")
    p.add_argument("--out", type=Path, default=Path("switch-out"), help="directory for switch.json (default: switch-out)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="trained backbone and tile pools, in DIR/pools ($SPARSELOOM_CACHE or ~/.cache/sparseloom)")
    p.add_argument("--cycles", type=int, default=6, help="times a transition sequence is repeated")
    p.add_argument("--steps", type=int, default=40, help="length of each Markov sequence")
    p.add_argument("--repeats", type=int, default=3, help="replay rounds per sequence")
    p.add_argument("--backbone", choices=BACKBONES, default=BACKBONES[0],
                   help="shared backbone: digits_resnet18 (the zoo's ResNet-18, 44.7 MB, default), "
                        "digits_resnet (the same at quarter width, 2.8 MB) or mlp (small, fast)")
    p.add_argument("--json", action="store_true", help="print the per-method summary as JSON")
    p.set_defaults(run=run)


def task_mapping(workload: Workload) -> dict[str, str]:
    """Workload task name -> the digits head that serves it."""
    names = sorted({t.name for t in workload.tasks})
    if not names:
        raise InputError([Complaint("tasks", "at least two tasks", "none")])
    if len(names) > len(HEAD_CLASSES):
        raise InputError([Complaint("tasks", f"at most {len(HEAD_CLASSES)} tasks for the digits study", str(len(names)))])
    if set(names) <= set(DRIVING_HEADS):
        return {n: DRIVING_HEADS[n] for n in names}
    return dict(zip(names, sorted(HEAD_CLASSES), strict=False))


def sequences_for(workload: Workload, cycles: int, steps: int) -> dict[str, list[str]]:
    mapping = task_mapping(workload)
    names = sorted(mapping)
    seed = workload.scenario.seed if workload.scenario else 0
    out: dict[str, list[str]] = {}
    tr = workload.scenario.transitions if workload.scenario else None
    if tr is not None and tr.sequence:
        out["workload_sequence"] = [mapping[n] for n in tr.sequence] * cycles
    elif tr is not None and tr.matrix:
        matrix = {a: {b: float(p) for b, p in row.items()} for a, row in tr.matrix.items()}
        out["workload_markov"] = [mapping[n] for n in markov_sequence(names, steps, seed, matrix=matrix)]
    out["markov"] = [mapping[n] for n in markov_sequence(names, steps, seed)]
    return out


def run(args: argparse.Namespace) -> int:
    workload = load_workload(args.workload)
    for flag in ("cycles", "steps", "repeats"):
        if getattr(args, flag) < 1:
            raise InputError([Complaint(f"--{flag}", "a positive integer", str(getattr(args, flag)))])
    config = StudyConfig(
        setting=SettingConfig(backbone=args.backbone),
        sequences=sequences_for(workload, args.cycles, args.steps),
        replay_repeats=args.repeats,
    )
    cache = cache_dir(args)
    report = run_study(args.out, config, cache_dir=cache, pools_dir=cache / "pools")
    summary = {
        name: {
            method: {
                "switch_latency_ms": m["switch_latency_ms"],
                "bytes_loaded_per_switch": m["bytes_loaded_per_switch"],
                "resident_memory_mb": m["resident_memory_mb"]["mean"],
                "speedup_vs_monolithic": m["speedup_vs_monolithic"],
                "accuracy": m["accuracy"],
            }
            for method, m in seq["methods"].items()
        }
        for name, seq in report["sequences"].items()
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, methods in summary.items():
            print(f"{name}:")
            for method, m in methods.items():
                lat = m["switch_latency_ms"]
                print(f"  {method:25s} mean {lat['mean']:7.2f} ms  p95 {lat['p95']:7.2f} ms  "
                      f"{m['bytes_loaded_per_switch'] / 1e6:6.3f} MB/switch  x{m['speedup_vs_monolithic']['mean']:.2f}")
    print(f"wrote {args.out / 'switch.json'}", file=sys.stderr)
    return 0
