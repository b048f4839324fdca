"""``sparseloom stitch DIR --model NAME``: stitched variants with accuracy (measured or estimated) and Pareto fronts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparseloom.commands.pool import open_pool, stitching_error

if TYPE_CHECKING:
    from stitching.stitch import StitchReport


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "stitch",
        help="list a model's stitched variants with accuracy and Pareto membership",
        description="Enumerate stitched variants of one pooled model; measure accuracy where affordable, estimate the rest.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="pool directory")
    p.add_argument("--model", required=True, help="model name in the pool")
    p.add_argument("--json", action="store_true", help="print every candidate as JSON")
    p.add_argument("--measure-all", action="store_true", help="measure every stitched variant (slow for big models)")
    p.add_argument("--budget", type=float, default=0.05, help="fraction of combinations the estimator may measure (default 0.05)")
    p.add_argument("--eval-limit", type=int, default=None, help="cap evaluation examples (sentences, test images)")
    p.add_argument("--cache", type=Path, default=None, help="zoo cache directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def to_json(report: StitchReport) -> dict[str, Any]:
    est = report.estimator
    return {
        "model": report.model,
        "evaluation": report.evaluation,
        "measured": report.measured,
        "estimator": None
        if est is None
        else {
            "form": est.form,
            "base_accuracy": est.base_accuracy,
            "floor": est.floor,
            "measurements": est.measurements,
            "calibration_mae": est.calibration_mae,
            "pairwise_corrections": len(est.pairs),
            "terms": [{"position": p, "variant": v, "delta": d} for (p, v), d in sorted(est.terms.items())],
        },
        "candidates": [
            {
                "variants": list(c.variants),
                "digests": list(c.digests),
                "accuracy": c.accuracy,
                "accuracy_source": c.accuracy_source,
                "flops": c.flops,
                "effective_flops": c.effective_flops,
                "bytes": c.bytes,
                "pareto": {name: i in set(front) for name, front in report.fronts.items()},
            }
            for i, c in enumerate(report.candidates)
        ],
        "mismatches": [m.__dict__ for m in report.mismatches],
    }


def run(args: argparse.Namespace) -> int:
    from stitching import zoo
    from stitching.stitch import stitch

    pool = open_pool(args.dir)
    try:
        info = pool.model_info(args.model)
        if not 0 < args.budget <= 1:
            raise ValueError(f"--budget must be in (0, 1], got {args.budget}")
        evaluator = None
        if info["zoo"] is not None and info["accuracy_known"]:
            base = zoo.load(info["zoo"], args.cache)
            evaluator = zoo.evaluator(info["zoo"], base, args.cache, args.eval_limit)
        report = stitch(pool, args.model, evaluator, args.measure_all, args.budget, progress=not args.no_progress)
    except ValueError as err:
        raise stitching_error(err, "--model" if "model" in str(err) else "stitch", "a pooled model that can be stitched") from None
    if args.json:
        print(json.dumps(to_json(report), indent=1))
        return 0
    print(f"{report.model}: {len(report.candidates)} stitched variants, {report.measured} measured ({report.evaluation})")
    for reason in report.mismatches[:10]:
        print(f"  excluded: {reason.reason}")
    front = report.fronts.get("flops", ())
    if not front:
        print("  accuracy unknown for this model: no Pareto front")
    for i in front:
        c = report.candidates[i]
        print(f"  {c.accuracy * 100 if c.accuracy is not None else float('nan'):6.2f}% ({c.accuracy_source:9}) "
              f"{c.effective_flops / 1e6:9.2f} eff. MFLOPs {c.bytes / 1e3:9.1f} KB  {' | '.join(c.variants)}")
    return 0
