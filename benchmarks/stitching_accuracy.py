"""Stitching accuracy benchmark: estimator error vs exhaustive measurement, Pareto gains, pool dedup.

For digits_cnn, digits_resnet and MiniLM (4 blocks, >= 5 variants each) this builds a pool,
measures EVERY stitched variant on the held-out evaluation set (ground truth),
fits the estimator with a 5% measurement budget, and prints:

- estimator MAE in accuracy points over the variants it did not measure
  (and over all), the fraction of combinations it measured;
- how many mixed stitched variants are on the accuracy/FLOPs (and bytes)
  Pareto front without being dominated by any original variant;
- dedup figures: pool bytes vs the sum of whole-model checkpoints, for each
  model and for a two-task pool that shares MiniLM between tasks.

Usage: python benchmarks/stitching_accuracy.py [--out DIR] [--sentences N] [--images N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

from stitching import zoo
from stitching.pool import ModelRequest, Pool, build_pool
from stitching.prune import Recipe
from stitching.stitch import (
    COSTS,
    Measurer,
    StitchedVariant,
    beats_originals,
    choices,
    fit_estimator,
    measured_mae,
    originals,
    pareto_front,
)

DIGITS = ModelRequest(
    "digits_cnn",
    "digits_cnn",
    blocks=4,
    recipes=(
        Recipe("structured", 0.3),
        Recipe("structured", 0.5),
        Recipe("structured", 0.7),
        Recipe("unstructured", 0.5),
        Recipe("unstructured", 0.9),
        Recipe("2:4"),
        Recipe("int8"),
    ),
)
# The ResNet's blocks: stem to stage 2, stage 3 to the first block of stage 4, its last basic block,
# and the classifier; the last two are small so that exhaustive measurement stays within minutes.
RESNET = ModelRequest(
    "digits_resnet",
    "digits_resnet",
    blocks=None,
    boundaries=("layer2.1", "layer4.0", "layer4.1"),
    recipes=(
        Recipe("structured", 0.5),
        Recipe("structured", 0.7),
        Recipe("structured", 0.85),
        Recipe("unstructured", 0.8),
        Recipe("unstructured", 0.95),
        Recipe("2:4"),
        Recipe("int8"),
    ),
)
# The last block is one layer so that exhaustive measurement (each leaf runs
# only the last block) stays within minutes on 2 cores.
MINILM = ModelRequest(
    "minilm",
    "minilm",
    blocks=None,
    boundaries=("layer1", "layer3", "layer4"),
    recipes=(Recipe("structured", 0.3), Recipe("structured", 0.5), Recipe("unstructured", 0.5), Recipe("2:4"), Recipe("int8")),
)
# A second task on the same MiniLM cut: its dense and shared variants are stored once.
MINILM_TASK2 = ModelRequest(
    "minilm_search", "minilm", blocks=None, boundaries=MINILM.boundaries, recipes=(Recipe("structured", 0.5), Recipe("int8"))
)


def evaluate(pool: Pool, model: str, limit: int | None, cache: Path) -> dict[str, object]:
    info = pool.model_info(model)
    base = zoo.load(info["zoo"], cache)
    evaluator = zoo.evaluator(info["zoo"], base, cache, limit)
    assert evaluator is not None
    per_position = choices(pool, model)
    total = 1
    for c in per_position:
        total *= len(c)
    t0 = time.perf_counter()
    truth = Measurer(pool, evaluator).measure_all([[b.digest for b in c] for c in per_position])
    exhaustive_s = time.perf_counter() - t0
    fit = Measurer(pool, evaluator)
    estimator = fit_estimator(pool, model, fit, budget=0.05)
    names = {tuple(b.digest for b in combo): [b.variant for b in combo] for combo in itertools.product(*per_position)}
    mae_unmeasured = measured_mae(estimator, truth, names, fit.results)
    mae_all = measured_mae(estimator, truth, names)
    additive_mae = sum(abs(estimator.estimate(names[k], pairs=False) - v) for k, v in truth.items()) / len(truth)
    by_key = {tuple(b.digest for b in combo): combo for combo in itertools.product(*per_position)}
    unmixed = originals(pool, model)
    items = [
        StitchedVariant(
            model,
            k,
            tuple(names[k]),
            acc,
            "measured",
            sum(b.flops for b in by_key[k]),
            sum(b.effective_flops for b in by_key[k]),
            sum(b.param_bytes for b in by_key[k]),
            k in unmixed,
        )
        for k, acc in truth.items()
    ]
    gains = {}
    for cost_name, cost in COSTS.items():
        front = pareto_front(items, cost)
        gains[cost_name] = {
            "front_size": len(front),
            "originals_on_front": sum(items[i].is_original for i in front),
            "mixed_beating_every_original": len(beats_originals(items, cost)),
        }
    original_points = {unmixed[v.digests]: round(v.accuracy * 100, 2) for v in items
                       if v.is_original and v.accuracy is not None}
    size = pool.size(model)
    return {
        "model": model,
        "evaluation": evaluator.data,
        "variants": pool.variants(model),
        "combinations": total,
        "exhaustive_measure_s": round(exhaustive_s, 1),
        "estimator_form": estimator.form,
        "measured_for_estimator": estimator.measurements,
        "measured_fraction": round(estimator.measurements / total, 4),
        "pairwise_corrections": len(estimator.pairs),
        "mae_points_unmeasured": round(mae_unmeasured * 100, 3),
        "mae_points_all": round(mae_all * 100, 3),
        "mae_points_terms_only": round(additive_mae * 100, 3),
        "original_accuracy_points": original_points,
        "pareto": gains,
        "pool_bytes": size.pool_bytes,
        "checkpoint_bytes": size.checkpoint_bytes,
        "unique_blocks": size.unique_blocks,
        "block_refs": size.block_refs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="pool directory (default: a temporary one)")
    parser.add_argument("--cache", type=Path, default=None, help="zoo cache directory")
    parser.add_argument("--sentences", type=int, default=48, help="MiniLM evaluation sentences")
    parser.add_argument("--images", type=int, default=None, help="digits_resnet evaluation images (default: all 540)")
    args = parser.parse_args()
    cache = args.cache or zoo.default_cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp) / "pool"
        t0 = time.perf_counter()
        pool = build_pool(root, [DIGITS, RESNET, MINILM, MINILM_TASK2], cache)
        print(f"pool build: {time.perf_counter() - t0:.1f} s")
        results = [evaluate(pool, "digits_cnn", None, cache), evaluate(pool, "digits_resnet", args.images, cache),
                   evaluate(pool, "minilm", args.sentences, cache)]
        whole = pool.size()
        two_task_refs = pool.blocks("minilm") + pool.blocks("minilm_search")
        two_task_unique = {b.digest for b in two_task_refs}
        info = [pool.model_info(m)["checkpoint_bytes"] for m in ("minilm", "minilm_search")]
        dedup = {
            "whole_pool": {"pool_bytes": whole.pool_bytes, "checkpoint_bytes": whole.checkpoint_bytes,
                           "unique_blocks": whole.unique_blocks, "block_refs": whole.block_refs},
            "minilm_two_tasks": {
                "block_refs": len(two_task_refs),
                "unique_blocks": len(two_task_unique),
                "pool_bytes": sum(pool.file_bytes(d) for d in two_task_unique),
                "checkpoint_bytes": sum(sum(c.values()) for c in info),
            },
        }
        print(json.dumps({"models": results, "dedup": dedup}, indent=1))
        for r in results:
            fraction = float(r["measured_fraction"])  # type: ignore[arg-type]
            print(
                f"{r['model']}: {r['combinations']} stitched variants, estimator ({r['estimator_form']}) measured "
                f"{r['measured_for_estimator']} ({100 * fraction:.1f}%), "
                f"MAE {r['mae_points_unmeasured']} points on the rest (terms only: {r['mae_points_terms_only']}); "
                f"mixed variants beating every original on accuracy/FLOPs: "
                f"{r['pareto']['flops']['mixed_beating_every_original']}"  # type: ignore[index]
            )
        for name, d in dedup.items():
            print(f"dedup {name}: {d['unique_blocks']} unique of {d['block_refs']} blocks, "
                  f"{d['pool_bytes'] / 1e6:.1f} MB pool vs {d['checkpoint_bytes'] / 1e6:.1f} MB of whole-model checkpoints "
                  f"({d['pool_bytes'] / d['checkpoint_bytes']:.2f}x)")


if __name__ == "__main__":
    main()
