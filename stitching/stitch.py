"""Stitching: enumerate stitched variants, measure or estimate their accuracy, find Pareto fronts.

A stitched variant picks one block per position (blocks may come from
different variants) whose interfaces chain. Accuracy is *measured* on the
model's held-out evaluation set where we run it, and *estimated* elsewhere by
an :class:`Estimator` fitted from a few measurements: the dense model, every
single-block swap (one term per position and variant) and a few random
stitched variants that choose the estimator's form.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm import tqdm

from stitching.partition import BlockModule
from stitching.pool import Block, Pool
from stitching.zoo.evaluate import Evaluator, UserEvaluator

Source = Literal["measured", "estimated", "unknown"]
MAX_COMBINATIONS = 250_000


@dataclass(frozen=True)
class StitchedVariant:
    """One block choice per position, with its accuracy (and where that number comes from) and cost."""

    model: str
    digests: tuple[str, ...]
    variants: tuple[str, ...]
    accuracy: float | None
    accuracy_source: Source
    flops: int
    effective_flops: int
    bytes: int
    # An unmixed variant: the blocks of one recipe at every position. Decided by digests (see
    # originals), not by names: a position the recipe leaves as it is shares its block with dense.
    is_original: bool


@dataclass(frozen=True)
class Mismatch:
    """Why block ``left`` (position p) cannot feed block ``right`` (position p+1)."""

    position: int
    left: str
    right: str
    reason: str


def mismatch_reason(left: Block, right: Block) -> str | None:
    """None when ``left``'s outputs are exactly ``right``'s inputs, else a one-line explanation."""
    if left.outputs == right.inputs:
        return None
    lo = ", ".join(map(str, left.outputs))
    ri = ", ".join(map(str, right.inputs))
    return (
        f"block {left.position} of {left.variant} ({'+'.join(left.units)}) outputs {lo}, "
        f"but block {right.position} of {right.variant} ({'+'.join(right.units)}) expects {ri}"
    )


def choices(pool: Pool, model: str) -> list[list[Block]]:
    """Per position, one block per unique digest (the first variant that produced it names it)."""
    out: list[list[Block]] = []
    for position in range(pool.positions(model)):
        seen: dict[str, Block] = {}
        for variant in pool.variants(model):
            b = pool.block(model, position, variant)
            seen.setdefault(b.digest, b)
        out.append(list(seen.values()))
    return out


def enumerate_stitched(pool: Pool, model: str) -> tuple[list[tuple[Block, ...]], list[Mismatch]]:
    """Every interface-compatible block chain of ``model``, and every incompatible adjacent pair."""
    per_position = choices(pool, model)
    total = math.prod(len(c) for c in per_position)
    if total > MAX_COMBINATIONS:
        raise ValueError(
            f"{model} has {total} stitched variants (more than {MAX_COMBINATIONS}); use fewer blocks or variants"
        )
    mismatches: list[Mismatch] = []
    bad: set[tuple[str, str]] = set()
    for p in range(len(per_position) - 1):
        for a, b in itertools.product(per_position[p], per_position[p + 1]):
            reason = mismatch_reason(a, b)
            if reason is not None:
                mismatches.append(Mismatch(p, a.variant, b.variant, reason))
                bad.add((a.digest, b.digest))
    chains = [
        combo
        for combo in itertools.product(*per_position)
        if not any((x.digest, y.digest) in bad for x, y in itertools.pairwise(combo))
    ]
    return chains, mismatches


def originals(pool: Pool, model: str) -> dict[tuple[str, ...], str]:
    """The block digests of each of ``model``'s recipes applied at every position, and the recipe's
    name (the first recipe, should two give the same blocks)."""
    positions = range(pool.positions(model))
    chains: dict[tuple[str, ...], str] = {}
    for v in pool.variants(model):
        chains.setdefault(tuple(pool.block(model, p, v).digest for p in positions), v)
    return chains


def _variant(model: str, combo: Sequence[Block], accuracy: float | None, source: Source,
             unmixed: Mapping[tuple[str, ...], str]) -> StitchedVariant:
    digests = tuple(b.digest for b in combo)
    return StitchedVariant(
        model=model,
        digests=digests,
        variants=tuple(b.variant for b in combo),
        accuracy=accuracy,
        accuracy_source=source,
        flops=sum(b.flops for b in combo),
        effective_flops=sum(b.effective_flops for b in combo),
        bytes=sum(b.param_bytes for b in combo),
        is_original=digests in unmixed,
    )


class Measurer:
    """Measures stitched variants on an evaluator, reusing the outputs of shared prefixes (a user's
    evaluator is handed each stitched variant whole, as one module, so nothing is shared).

    ``count`` is the number of distinct stitched variants measured so far.
    """

    def __init__(self, pool: Pool, evaluator: Evaluator | UserEvaluator, prefix_cache_mb: float = 512.0,
                 on_measure: Callable[[], object] | None = None) -> None:
        """``prefix_cache_mb`` bounds the activations kept for shared prefixes (least recently used go);
        ``on_measure`` is called after each new stitched variant is measured (progress)."""
        self.pool, self.evaluator = pool, evaluator
        self._on_measure = on_measure
        self._modules: dict[str, BlockModule] = {}
        self._results: dict[tuple[str, ...], float] = {}
        self._prefixes: OrderedDict[tuple[str, ...], tuple[torch.Tensor, ...]] = OrderedDict()
        self._prefix_bytes = 0
        self._prefix_limit = int(prefix_cache_mb * 1e6)

    @property
    def count(self) -> int:
        return len(self._results)

    @property
    def results(self) -> Mapping[tuple[str, ...], float]:
        return dict(self._results)

    def _module(self, digest: str) -> BlockModule:
        if digest not in self._modules:
            self._modules[digest] = self.pool.load_module(digest)
        return self._modules[digest]

    def measure(self, digests: Sequence[str]) -> float:
        key = tuple(digests)
        if key not in self._results and isinstance(self.evaluator, UserEvaluator):
            chain = BlockModule([u for d in key for u in self._module(d).units]).eval()  # type: ignore[misc]
            self._results[key] = self.evaluator.evaluate(chain)
            if self._on_measure is not None:
                self._on_measure()
        if key not in self._results:
            assert isinstance(self.evaluator, Evaluator)
            # Start from the longest prefix already run: single-block swaps at position p all share
            # the dense blocks before p, so most of their chain is not run again.
            start, xs = 0, self.evaluator.inputs
            for n in range(len(key) - 1, 0, -1):
                hit = self._prefixes.get(key[:n])
                if hit is not None:
                    self._prefixes.move_to_end(key[:n])
                    start, xs = n, hit
                    break
            with torch.no_grad():
                for n in range(start, len(key)):
                    xs = self._module(key[n]).run(*xs)
                    if n + 1 < len(key):
                        self._keep(key[: n + 1], xs)
            self._results[key] = self.evaluator.score(xs)
            if self._on_measure is not None:
                self._on_measure()
        return self._results[key]

    def _keep(self, prefix: tuple[str, ...], xs: tuple[torch.Tensor, ...]) -> None:
        size = sum(x.numel() * x.element_size() for x in xs)
        if size > self._prefix_limit or prefix in self._prefixes:
            return
        while self._prefixes and self._prefix_bytes + size > self._prefix_limit:
            _, old = self._prefixes.popitem(last=False)
            self._prefix_bytes -= sum(x.numel() * x.element_size() for x in old)
        self._prefixes[prefix] = xs
        self._prefix_bytes += size

    def measure_all(self, per_position: Sequence[Sequence[str]], progress: bool = True) -> dict[tuple[str, ...], float]:
        """Measure every combination, depth first so each prefix runs once."""
        total = math.prod(len(c) for c in per_position)
        bar = tqdm(total=total, desc="measure", unit="variant", disable=not progress)
        evaluator = self.evaluator
        if isinstance(evaluator, UserEvaluator):
            for combo in itertools.product(*per_position):
                self.measure(combo)
                bar.update(1)
            bar.close()
            return {k: v for k, v in self._results.items() if len(k) == len(per_position)}

        def walk(prefix: tuple[str, ...], xs: tuple[torch.Tensor, ...]) -> None:
            p = len(prefix)
            if p == len(per_position):
                self._results.setdefault(prefix, evaluator.score(xs))
                bar.update(1)
                return
            for d in per_position[p]:
                with torch.no_grad():
                    walk(prefix + (d,), self._module(d).run(*xs))

        walk((), evaluator.inputs)
        bar.close()
        return {k: v for k, v in self._results.items() if len(k) == len(per_position)}


Pair = tuple[int, str, int, str]


@dataclass(frozen=True)
class Estimator:
    """Accuracy of a stitched variant from per-block degradation terms (plus a few pairwise corrections).

    ``terms[(position, variant)]`` is the measured accuracy change when only
    that position uses that variant (dense elsewhere). ``form`` says how the
    terms combine:

    - ``additive``: base + sum of terms;
    - ``multiplicative``: the accuracy above ``floor`` (chance level) is scaled
      by each block's retained fraction, i.e. additive in :attr:`log_terms`,
      so an ILP can still use a sum.

    ``pairs[(p, a, q, b)]`` corrects the combination of variant ``a`` at
    position ``p`` with ``b`` at ``q`` (in the form's own space: accuracy
    points, or log retained fraction), for the pairs that were measured.
    ``measurements`` counts the stitched variants measured to fit it.
    """

    model: str
    form: Literal["additive", "multiplicative"]
    base_accuracy: float
    floor: float
    terms: Mapping[tuple[int, str], float]
    measurements: int
    pairs: Mapping[Pair, float] = field(default_factory=dict)
    calibration_mae: float = field(default=float("nan"))

    @property
    def log_terms(self) -> dict[tuple[int, str], float]:
        """log of each block's retained fraction of accuracy above the floor (0 for dense)."""
        return {k: self._space(t) for k, t in self.terms.items()}

    def _space(self, delta: float) -> float:
        """A term in the form's own space."""
        if self.form == "additive":
            return delta
        span = self.base_accuracy - self.floor
        return math.log(max(1e-6, 1.0 + delta / span)) if span > 0 else 0.0

    def _from_space(self, total: float) -> float:
        if self.form == "additive":
            value = self.base_accuracy + total
        else:
            value = self.floor + (self.base_accuracy - self.floor) * math.exp(total)
        return min(1.0, max(0.0, value))

    def estimate(self, variants: Sequence[str], pairs: bool = True) -> float:
        total = sum(self._space(self.terms.get((p, v), 0.0)) for p, v in enumerate(variants))
        if pairs:
            for (p, a), (q, b) in itertools.combinations(enumerate(variants), 2):
                total += self.pairs.get((p, a, q, b), 0.0)
        return self._from_space(total)

    def pair_space(self, p: int, a: str, q: int, b: str, measured: float) -> float:
        """The correction that makes the estimate of a measured two-block swap exact."""
        space = self._space(measured - self.base_accuracy) if self.form == "multiplicative" else measured - self.base_accuracy
        return space - self._space(self.terms[(p, a)]) - self._space(self.terms[(q, b)])


def fit_estimator(
    pool: Pool,
    model: str,
    measurer: Measurer,
    budget: float = 0.05,
    calibration: int = 8,
    seed: int = 0,
) -> Estimator:
    """Fit an estimator while measuring at most ``budget`` of all combinations (never fewer than the singles).

    1. the dense model and every single-block swap give the terms;
    2. ``calibration`` random stitched variants choose the form (additive or multiplicative);
    3. the remaining budget measures two-block swaps, most damaging pairs first
       (ranked by the product of their terms), each giving one pairwise correction.
    """
    per_position = choices(pool, model)
    positions = len(per_position)
    dense = [pool.block(model, p, "dense") for p in range(positions)]
    dense_digests = [b.digest for b in dense]
    base = measurer.measure(dense_digests)
    floor = measurer.evaluator.floor
    terms: dict[tuple[int, str], float] = {}
    for p, blocks in enumerate(per_position):
        for b in blocks:
            digests = list(dense_digests)
            digests[p] = b.digest
            terms[(p, b.variant)] = measurer.measure(digests) - base
    space = math.prod(len(c) for c in per_position)
    limit = max(measurer.count, int(budget * space))
    rng = random.Random(seed)
    samples: list[tuple[list[str], float]] = []
    seen: set[tuple[str, ...]] = set(measurer.results)
    while len(samples) < calibration and len(seen) < space and measurer.count < limit:
        combo = [rng.choice(c) for c in per_position]
        key = tuple(b.digest for b in combo)
        if key in seen:
            continue
        seen.add(key)
        samples.append(([b.variant for b in combo], measurer.measure(key)))
    forms: tuple[Literal["additive", "multiplicative"], ...] = ("additive", "multiplicative")
    best: tuple[float, Literal["additive", "multiplicative"]] = (float("inf"), "additive")
    for form in forms:
        trial = Estimator(model, form, base, floor, terms, 0)
        errors = [abs(trial.estimate(names) - acc) for names, acc in samples]
        mae = sum(errors) / len(errors) if errors else 0.0
        if mae < best[0]:
            best = (mae, form)
    partial = Estimator(model, best[1], base, floor, terms, 0)
    ranked = sorted(
        (
            (terms[(p, a.variant)] * terms[(q, b.variant)], p, a, q, b)
            for p, q in itertools.combinations(range(positions), 2)
            for a in per_position[p]
            for b in per_position[q]
            if terms[(p, a.variant)] < 0 and terms[(q, b.variant)] < 0
        ),
        key=lambda t: -t[0],
    )
    pairs: dict[Pair, float] = {}
    for _, p, a, q, b in ranked:
        if measurer.count >= limit:
            break
        digests = list(dense_digests)
        digests[p], digests[q] = a.digest, b.digest
        pairs[(p, a.variant, q, b.variant)] = partial.pair_space(p, a.variant, q, b.variant, measurer.measure(digests))
    for p in range(positions):  # variants sharing a digest share the term
        for variant in pool.variants(model):
            terms.setdefault((p, variant), terms[(p, _name(per_position[p], pool.block(model, p, variant).digest))])
    return Estimator(model, best[1], base, floor, terms, measurer.count, pairs, best[0])


def _name(blocks: Sequence[Block], digest: str) -> str:
    return next(b.variant for b in blocks if b.digest == digest)


def pareto_front(items: Sequence[StitchedVariant], cost: Callable[[StitchedVariant], float]) -> list[int]:
    """Indices of the items no other item beats (higher or equal accuracy at lower or equal cost, one strictly)."""
    known = [i for i, v in enumerate(items) if v.accuracy is not None]
    order = sorted(known, key=lambda i: (cost(items[i]), -(items[i].accuracy or 0.0)))
    front: list[int] = []
    best = -math.inf
    for i in order:
        acc = items[i].accuracy or 0.0
        if acc > best:
            front.append(i)
            best = acc
    return front


def dominates(a: StitchedVariant, b: StitchedVariant, cost: Callable[[StitchedVariant], float]) -> bool:
    if a.accuracy is None or b.accuracy is None:
        return False
    no_worse = a.accuracy >= b.accuracy and cost(a) <= cost(b)
    return no_worse and (a.accuracy > b.accuracy or cost(a) < cost(b))


def beats_originals(items: Sequence[StitchedVariant], cost: Callable[[StitchedVariant], float]) -> list[int]:
    """Indices of mixed stitched variants on the front that no original variant dominates."""
    originals = [v for v in items if v.is_original]
    front = set(pareto_front(items, cost))
    return [
        i
        for i, v in enumerate(items)
        if not v.is_original and i in front and not any(dominates(o, v, cost) for o in originals)
    ]


# Cost axes of the Pareto fronts. "flops" counts only non-zero weights (what a
# sparse kernel does); "dense_flops" what dense execution does; "bytes" the
# stored parameter bytes. Latency fronts come later, from profiles.
COSTS: dict[str, Callable[[StitchedVariant], float]] = {
    "flops": lambda v: float(v.effective_flops),
    "dense_flops": lambda v: float(v.flops),
    "bytes": lambda v: float(v.bytes),
}


@dataclass(frozen=True)
class StitchReport:
    """Candidates of one model with accuracy, the estimator used, Pareto fronts and interface mismatches."""

    model: str
    candidates: tuple[StitchedVariant, ...]
    estimator: Estimator | None
    fronts: Mapping[str, tuple[int, ...]]
    mismatches: tuple[Mismatch, ...]
    measured: int
    evaluation: str


def stitch(
    pool: Pool,
    model: str,
    evaluator: Evaluator | UserEvaluator | None,
    measure_all: bool = False,
    budget: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> StitchReport:
    """All stitched variants of ``model`` with measured or estimated accuracy and Pareto fronts.

    Without an evaluator (profiling-only models) accuracy is ``unknown`` and
    no front is drawn. Original (unmixed) variants are always measured.
    """
    chains, mismatches = enumerate_stitched(pool, model)
    estimator: Estimator | None = None
    results: Mapping[tuple[str, ...], float] = {}
    if evaluator is not None:
        per_position = choices(pool, model)
        # Roughly what fit_estimator measures: the budget's share of all combinations, at least the singles.
        expected = max(1 + sum(len(c) for c in per_position), int(budget * math.prod(len(c) for c in per_position)))
        with tqdm(total=expected, desc=f"accuracy {model}", unit="variant", disable=not progress or measure_all,
                  leave=False) as bar:
            measurer = Measurer(pool, evaluator, on_measure=bar.update)
            if measure_all:
                measurer.measure_all([[b.digest for b in c] for c in per_position], progress)
            estimator = fit_estimator(pool, model, measurer, budget, seed=seed)
            for variant in pool.variants(model):
                measurer.measure([pool.block(model, p, variant).digest for p in range(pool.positions(model))])
        results = measurer.results
    candidates: list[StitchedVariant] = []
    unmixed = originals(pool, model)
    for combo in chains:
        key = tuple(b.digest for b in combo)
        if key in results:
            candidates.append(_variant(model, combo, results[key], "measured", unmixed))
        elif estimator is not None:
            candidates.append(_variant(model, combo, estimator.estimate([b.variant for b in combo]), "estimated",
                                       unmixed))
        else:
            candidates.append(_variant(model, combo, None, "unknown", unmixed))
    fronts = {name: tuple(pareto_front(candidates, cost)) for name, cost in COSTS.items()} if evaluator else {}
    return StitchReport(
        model=model,
        candidates=tuple(candidates),
        estimator=estimator,
        fronts=fronts,
        mismatches=tuple(mismatches),
        measured=len(results),
        evaluation=evaluator.data if evaluator is not None else "none: accuracy unknown for this model",
    )


def measured_mae(estimator: Estimator, truth: Mapping[tuple[str, ...], float], names: Mapping[tuple[str, ...], Sequence[str]], exclude: Iterable[tuple[str, ...]] = ()) -> float:
    """Mean absolute error of ``estimator`` against measured ground truth, skipping ``exclude`` (e.g. its own measurements)."""
    skip = set(exclude)
    errors = [abs(estimator.estimate(names[k]) - acc) for k, acc in truth.items() if k not in skip]
    return sum(errors) / len(errors) if errors else float("nan")
