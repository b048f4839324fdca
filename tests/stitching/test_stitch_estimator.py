"""Stitching: enumeration with interface checks, the estimator on known ground truth, Pareto fronts."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from stitching import zoo
from stitching.partition import TensorSpec
from stitching.pool import Pool
from stitching.stitch import (
    Measurer,
    StitchedVariant,
    beats_originals,
    choices,
    enumerate_stitched,
    fit_estimator,
    mismatch_reason,
    pareto_front,
    stitch,
)
from stitching.zoo.evaluate import Evaluator


class SyntheticMeasurer(Measurer):
    """Ground truth from a formula of the variant names instead of running blocks."""

    def __init__(self, pool: Pool, model: str, truth: dict[tuple[int, str], float], form: str) -> None:
        dummy = Evaluator((torch.zeros(1),), torch.tensor([0, 9]), "top1", "synthetic")
        super().__init__(pool, dummy)
        self.names = {b.digest: b.variant for b in pool.blocks(model)}
        self.truth, self.form = truth, form

    def value(self, variants: Sequence[str]) -> float:
        deltas = [self.truth[(p, v)] for p, v in enumerate(variants)]
        if self.form == "additive":
            return 0.9 + sum(deltas)
        return 0.1 + 0.8 * math.prod(1 + d / 0.8 for d in deltas)

    def measure(self, digests: Sequence[str]) -> float:
        key = tuple(digests)
        if key not in self._results:
            self._results[key] = self.value([self.names[d] for d in key])
        return self._results[key]


@pytest.mark.parametrize("form", ["additive", "multiplicative"])
def test_estimator_recovers_a_known_ground_truth(digits_pool: Pool, form: str) -> None:
    variants = digits_pool.variants("digits_cnn")
    truth = {(p, v): (0.0 if v == "dense" else -0.01 * (p + 1) * (i + 1)) for p in range(4) for i, v in enumerate(variants)}
    measurer = SyntheticMeasurer(digits_pool, "digits_cnn", truth, form)
    est = fit_estimator(digits_pool, "digits_cnn", measurer, budget=0.2, calibration=6)
    assert est.form == form
    assert est.base_accuracy == pytest.approx(0.9)
    assert est.terms[(2, variants[1])] == pytest.approx(truth[(2, variants[1])])
    total = 4 ** 4
    assert est.measurements <= 0.2 * total
    errors = [abs(est.estimate(combo) - measurer.value(combo)) for combo in itertools.product(variants, repeat=4)]
    assert max(errors) < 1e-6
    # With this ground truth, pairwise corrections are (numerically) zero.
    assert all(abs(c) < 1e-6 for c in est.pairs.values())


def test_pairwise_corrections_fix_an_interaction(digits_pool: Pool) -> None:
    variants = digits_pool.variants("digits_cnn")
    truth = {(p, v): (0.0 if v == "dense" else -0.05) for p in range(4) for v in variants}

    class Interacting(SyntheticMeasurer):
        def value(self, names: Sequence[str]) -> float:
            extra = -0.2 if names[0] == names[1] == "unstructured-0.9" else 0.0
            return super().value(names) + extra

    measurer = Interacting(digits_pool, "digits_cnn", truth, "additive")
    est = fit_estimator(digits_pool, "digits_cnn", measurer, budget=0.25, calibration=4)
    combo = ["unstructured-0.9", "unstructured-0.9", "dense", "dense"]
    assert est.estimate(combo) == pytest.approx(measurer.value(combo), abs=1e-6)
    assert est.estimate(combo, pairs=False) == pytest.approx(measurer.value(combo) + 0.2, abs=1e-6)


def test_stitch_measures_originals_and_estimates_the_rest(digits_pool: Pool, cache_dir: Path, digits_base: object) -> None:
    ev = zoo.evaluator("digits_cnn", zoo.load("digits_cnn", cache_dir), cache_dir, limit=200)
    report = stitch(digits_pool, "digits_cnn", ev, budget=0.05, progress=False)
    assert len(report.candidates) == 4 ** 4
    sources = {c.accuracy_source for c in report.candidates}
    assert sources == {"measured", "estimated"}
    originals = [c for c in report.candidates if c.is_original]
    assert len(originals) == 4 and all(c.accuracy_source == "measured" for c in originals)
    assert report.measured == sum(c.accuracy_source == "measured" for c in report.candidates)
    dense = next(c for c in originals if c.variants[0] == "dense")
    assert dense.accuracy == pytest.approx(ev.score(digits_base.whole.run(*ev.inputs)))  # type: ignore[attr-defined]
    assert all(0.0 <= (c.accuracy or 0) <= 1.0 for c in report.candidates)
    assert set(report.fronts) == {"flops", "dense_flops", "bytes"} and report.fronts["flops"]


def test_mismatched_interfaces_are_explained_and_excluded(digits_pool: Pool) -> None:
    a = digits_pool.block("digits_cnn", 1, "dense")
    b = digits_pool.block("digits_cnn", 2, "dense")
    assert mismatch_reason(a, b) is None
    wrong = dataclasses.replace(b, inputs=(TensorSpec((1, 16, 8, 8), "float32"),))
    reason = mismatch_reason(a, wrong)
    assert reason is not None and "float32[1,16,4,4]" in reason and "float32[1,16,8,8]" in reason
    chains, mismatches = enumerate_stitched(digits_pool, "digits_cnn")
    assert len(chains) == 4 ** 4 and mismatches == []


def _sv(acc: float, flops: int, variants: tuple[str, ...]) -> StitchedVariant:
    return StitchedVariant("m", ("d",) * len(variants), variants, acc, "measured", flops, flops, flops,
                           len(set(variants)) == 1)


def test_pareto_front_and_mixed_variants_that_beat_the_originals() -> None:
    items = [
        _sv(0.95, 100, ("dense", "dense")),
        _sv(0.80, 50, ("s", "s")),
        _sv(0.93, 75, ("dense", "s")),  # between the originals: a new trade-off
        _sv(0.70, 80, ("s", "dense")),  # dominated by ("s","s")
    ]
    cost = lambda v: float(v.effective_flops)
    assert sorted(pareto_front(items, cost)) == [0, 1, 2]
    assert beats_originals(items, cost) == [2]


def test_without_an_evaluator_accuracy_is_unknown(digits_pool: Pool) -> None:
    # What profiling-only zoo models (random weights) get: no accuracy, no front.
    report = stitch(digits_pool, "digits_cnn", None, progress=False)
    assert {c.accuracy_source for c in report.candidates} == {"unknown"}
    assert all(c.accuracy is None for c in report.candidates)
    assert report.fronts == {} and report.estimator is None and report.measured == 0
    assert len(choices(digits_pool, "digits_cnn")) == 4


def test_measurer_reuses_shared_prefixes_and_gets_the_same_scores(digits_pool: Pool, cache_dir: Path,
                                                                   digits_base: object) -> None:
    ev = zoo.evaluator("digits_cnn", zoo.load("digits_cnn", cache_dir), cache_dir, limit=100)
    dense = [digits_pool.block("digits_cnn", p, "dense").digest for p in range(4)]
    swaps = []
    for p in range(4):
        swap = list(dense)
        swap[p] = digits_pool.block("digits_cnn", p, "int8").digest
        swaps.append(swap)

    def counted(limit_mb: float) -> tuple[list[float], int]:
        m = Measurer(digits_pool, ev, prefix_cache_mb=limit_mb)
        runs = 0
        load = m._module

        def module(digest: str):  # type: ignore[no-untyped-def]
            nonlocal runs
            runs += 1
            return load(digest)

        m._module = module  # type: ignore[method-assign]
        return [m.measure(d) for d in [dense, *swaps]], runs

    cached, cached_runs = counted(512.0)
    plain, plain_runs = counted(0.0)
    assert cached == plain
    assert plain_runs == 5 * 4
    # Swap at p reuses the dense prefix of length p: 4 + (4 + 3 + 2 + 1) block runs.
    assert cached_runs == 4 + 10
