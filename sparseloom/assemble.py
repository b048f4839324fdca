"""Assemble a planning problem from a workload: pool, profile, accuracy terms, then scheduler numbers.

The data flow of DESIGN.md in one visible place::

    workload models --stitching--> pool --backends--> profile
    pool + zoo evaluator --stitching--> accuracy terms
    workload tasks + pool + profile + terms --> scheduler.Problem

Every step caches on disk under the cache directory, so a warm re-run only
reads files. Each latency keeps its ``measured``/``modelled`` mark.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from backends.block import BlockSpec
from backends.processor import SoCSpec
from backends.profile import Profile
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec
from sparseloom.arrivals import mean_rate_hz, sustained_rate_hz
from sparseloom.errors import InputError
from sparseloom.errors import Complaint
from sparseloom.workload import ModelSpec, SoC, Workload
from stitching import sealed, zoo
from stitching.pool import Block as PoolBlock, ModelRequest, Pool, build_pool
from stitching.prune import Recipe
from stitching.stitch import stitch
from stitching.units import Factories, import_factory
from stitching.zoo.evaluate import EvaluationError, Evaluator, UserEvaluator

MB = 2**20


@dataclass(frozen=True)
class AccuracyTerms:
    """Per-block accuracy terms of one model, in the form the scheduler adds up."""

    model: str
    form: str  # "additive" or "multiplicative"
    base_accuracy: float
    floor: float
    # (position, variant) -> accuracy change of swapping in that one block (accuracy points)
    deltas: Mapping[tuple[int, str], float]
    measurements: int
    evaluation: str
    # Stitched variants measured on the evaluation data (block digests per position -> accuracy):
    # every whole variant and the estimator's samples. The verdict uses these where they exist.
    measured: Mapping[tuple[str, ...], float] = field(default_factory=dict)

    def term(self, position: int, variant: str) -> float:
        """The term in scheduler space: points (additive) or log retained fraction (multiplicative)."""
        delta = self.deltas[(position, variant)]
        if self.form == "additive":
            return delta
        span = self.base_accuracy - self.floor
        return math.log(max(1e-6, 1.0 + delta / span)) if span > 0 else 0.0


@dataclass(frozen=True)
class Assembled:
    """Everything a policy, the simulator or the runtime needs for one workload on one SoC."""

    workload: Workload
    soc: SoCSpec
    pool: Pool
    profile: Profile
    problem: Problem
    accuracy: Mapping[str, AccuracyTerms]
    # Per user model: the user's own evaluation (API ``evaluate=`` or YAML ``evaluation:``).
    evaluators: Mapping[str, UserEvaluator] = field(default_factory=dict)


def model_request(spec: ModelSpec) -> ModelRequest:
    """The pool build request for one validated model spec (zoo name or user factory)."""
    recipes: list[Recipe] = []
    for v in spec.variants:
        if v.pattern in ("2:4", "int8"):
            recipes.append(Recipe(v.pattern))
        else:
            recipes += [Recipe(v.pattern, level, v.block_size, v.importance) for level in v.levels]
    return ModelRequest(spec.name, spec.zoo, spec.partition.blocks, spec.partition.boundaries, tuple(recipes),
                        factory=spec.module, input_shape=spec.input_shape)


def model_requests(workload: Workload, source: str) -> list[ModelRequest]:
    """Pool build requests for a workload's models (zoo models and user factories)."""
    requests = [model_request(spec) for spec in workload.models]
    if not requests:
        raise InputError([Complaint("models", "at least one model", "none", source)])
    return requests


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pool_dir(cache_dir: Path, requests: Sequence[ModelRequest]) -> Path:
    """One pool per distinct set of model requests."""
    return cache_dir / "pools" / _key([asdict(r) for r in requests])


def workload_pool(workload: Workload, cache_dir: Path, progress: bool = True, source: str = "workload",
                  factories: Factories | None = None) -> Pool:
    """The (cached, resumable) pool holding every variant of the workload's models (``factories``:
    in-memory models the workload's ``module`` entries name)."""
    requests = model_requests(workload, source)
    return build_pool(pool_dir(cache_dir, requests), requests, cache_dir, progress=progress, factories=factories)


def _example(spec_shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    torch_dtype = getattr(torch, dtype)
    if torch_dtype.is_floating_point:
        return torch.randn(spec_shape, generator=torch.Generator().manual_seed(0)).to(torch_dtype)
    return torch.zeros(spec_shape, dtype=torch_dtype)  # token ids, masks: 0 is always valid


def block_spec(pool: Pool, block: PoolBlock) -> BlockSpec:
    """A pool block as the backends compile and profile it."""
    inputs = tuple(_example(s.shape, s.dtype) for s in block.inputs)
    dtype = "int8" if block.pattern == "int8" else "fp32"
    pattern = "dense" if block.pattern in ("int8",) else block.pattern
    return BlockSpec(name=f"{block.model}/{block.position}/{block.variant}", module=pool.load_module(block.digest),
                     example_inputs=inputs, digest=block.digest, pattern=pattern, level=block.level, dtype=dtype,
                     flops=float(block.flops), weight_bytes=block.param_bytes)


# Most idle time the profiler leaves before a timed run: block latencies measured here stop growing
# with the gap by about 10-25 ms (digits_cnn block 0, torch eager: 0.32 ms after 5 ms, 0.45 after 25).
MAX_IDLE_MS = 25.0


def idle_gap_ms(workload: Workload, base_dir: Path) -> float:
    """How long a processor typically sits idle before a request of ``workload`` arrives: the median
    gap of Poisson arrivals at the tasks' total mean rate (ln 2 / rate), at most ``MAX_IDLE_MS``.

    The profiler times blocks after this gap, so they start as cold (thread pools asleep, caches
    shared with other work) as the runtime's first block of a request does under this load.
    """
    rate_hz = sum(mean_rate_hz(t.arrival, base_dir=base_dir) for t in workload.tasks)
    return round(min(MAX_IDLE_MS, 1000.0 * math.log(2) / rate_hz), 1) if rate_hz > 0 else MAX_IDLE_MS


def profile_pool(spec: SoCSpec, pool: Pool, cache_dir: Path, progress: bool = True, repeats: int = 20,
                 tune_trials: int = 0, compile_absent: bool = False, idle_ms: float | None = None,
                 calibrate_on_host: bool = False) -> Profile:
    """Profile every unique block of ``pool`` on every processor of ``spec``; cached per (SoC, pool, tuning,
    idle gap).

    Present processors are measured, each run after ``idle_ms`` idle (see :func:`idle_gap_ms`; default
    ``backends.profiler.IDLE_MS``); absent ones
    are modelled, by default without generating their code (``compile_absent`` cross-compiles them too,
    which takes minutes per model). Modelled latencies use each processor's efficiency fitted to the
    published results in the SoC file, so they are the same on every machine; ``calibrate_on_host``
    fits them to 8 blocks measured here instead (then they move with this machine's load, and the
    profile's ``meta.efficiency`` and every entry's ``device`` say so).
    """
    blocks = {b.digest: b for b in pool.blocks()}
    if idle_ms is None:
        from backends.profiler import IDLE_MS

        idle_ms = IDLE_MS
    from backends.identity import TUNING_DIR, pipeline_version, tuning_state

    # The code the blocks compile to is part of what was measured: a new rule or record re-measures.
    key = _key("modelled-v8", spec.model_dump_json(), sorted(blocks), repeats, tune_trials, idle_ms, calibrate_on_host,
               pipeline_version(), tuning_state(cache_dir / TUNING_DIR))
    path = pool.root / "profiles" / f"{spec.name}-{key}.json"

    def measure() -> Profile:
        # Imported here: TVM takes seconds to import and a cached profile does not need it.
        from backends.base import cache_options
        from backends.profiler import Profiler

        specs = [block_spec(pool, b) for b in blocks.values()]
        options = cache_options(cache_dir / "compiled", tune_trials=tune_trials, cross_link=False)
        return Profiler(spec, options, repeats=repeats, progress=progress, compile_absent=compile_absent,
                        calibration_blocks=8 if calibrate_on_host else 0, idle_ms=idle_ms).profile(
            specs, {d: pool.path(d) for d in blocks})

    # Sealed and locked: a torn or altered profile is measured again, and two processes measure once.
    return sealed.cached(path, measure, Profile.to_json, Profile.from_json)


def user_evaluators(workload: Workload, source: str = "workload",
                    given: Mapping[str, UserEvaluator] | None = None) -> dict[str, UserEvaluator]:
    """Per ``module`` model with an evaluation: its :class:`UserEvaluator` (``given`` ones, from the
    Python API, first; then the workload's ``evaluation.module`` imports). InputError naming the
    model when an import fails."""
    out = dict(given or {})
    for i, m in enumerate(workload.models):
        if m.evaluation is None or m.name in out:
            continue
        try:
            fn = import_factory(m.evaluation.module)
        except ValueError as err:
            raise InputError([Complaint(f"models[{i}].evaluation.module", "an importable 'pkg.mod:fn'", str(err),
                                        source)]) from None
        out[m.name] = UserEvaluator(fn, m.name, m.evaluation.module, m.evaluation.limit_s)  # type: ignore[arg-type]
    return out


def evaluator_for(pool: Pool, model: str, cache_dir: Path,
                  users: Mapping[str, UserEvaluator]) -> Evaluator | UserEvaluator | None:
    """What measures ``model``'s accuracy: the zoo's evaluator, the user's own, or None (unknown)."""
    name = pool.model_info(model)["zoo"]
    if name is None:
        return users.get(model)
    if not zoo.entry(name).accuracy_known:
        return None
    return zoo.evaluator(name, zoo.load(name, cache_dir), cache_dir)


def evaluation_key(evaluator: UserEvaluator | None) -> list[str]:
    """What identifies a user's evaluation in cache keys: its name and its code (a changed metric is
    measured again; data it reads from elsewhere is not seen, see docs)."""
    if evaluator is None:
        return []
    try:
        code = inspect.getsource(evaluator.fn)
    except (OSError, TypeError):
        code = getattr(evaluator.fn, "__qualname__", repr(evaluator.fn))
    return [evaluator.data, hashlib.sha256(code.encode()).hexdigest()]


def accuracy_terms(pool: Pool, model: str, cache_dir: Path, progress: bool = True,
                   users: Mapping[str, UserEvaluator] | None = None, source: str = "workload") -> AccuracyTerms | None:
    """Measured per-block accuracy terms for ``model`` (None when its accuracy is unknown); cached.
    ``users``: the users' own evaluations of their models; one that fails is an InputError naming the
    model, and nothing is recorded."""
    info = pool.model_info(model)
    name = info["zoo"]
    user = (users or {}).get(model) if name is None else None
    if (name is None and user is None) or (name is not None and not zoo.entry(name).accuracy_known):
        return None  # a user model without an evaluation, or a profiling-only zoo model: accuracy unknown
    digests = sorted(b.digest for b in pool.blocks(model))
    path = pool.root / "accuracy" / f"{model}-{_key('v2', digests, *evaluation_key(user))}.json"

    def decode(data: dict) -> AccuracyTerms:
        deltas = {(int(p), v): d for p, v, d in data.pop("deltas")}
        measured = {tuple(k): float(a) for k, a in data.pop("measured")}
        return AccuracyTerms(deltas=deltas, measured=measured, **data)

    data = sealed.read(path)
    if data is not None:
        return decode(data)
    with sealed.lock(path):  # measured once across processes; a bad record is measured again
        data = sealed.read(path)
        if data is not None:
            return decode(data)
        evaluator = evaluator_for(pool, model, cache_dir, users or {})
        try:
            report = stitch(pool, model, evaluator, progress=progress)
        except EvaluationError as err:
            raise InputError([Complaint(f"models.{model}.evaluation", "an evaluate that returns a number in [0, 1] "
                                        "within its time limit", str(err), source)]) from None
        est = report.estimator
        if est is None:
            return None
        measured = {c.digests: c.accuracy for c in report.candidates
                    if c.accuracy_source == "measured" and c.accuracy is not None}
        terms = AccuracyTerms(model, est.form, est.base_accuracy, est.floor, dict(est.terms), est.measurements,
                              report.evaluation, measured)
        record = {k: v for k, v in asdict(terms).items() if k not in ("deltas", "measured")}
        record["deltas"] = [[p, v, d] for (p, v), d in terms.deltas.items()]
        record["measured"] = [[list(k), a] for k, a in measured.items()]
        sealed.write(path, record)
        return terms


def _transitions(workload: Workload) -> dict[str, dict[str, float]]:
    tr = workload.scenario.transitions if workload.scenario else None
    if tr is None:
        return {}
    if tr.matrix is not None:
        return {src: dict(row) for src, row in tr.matrix.items()}
    counts: dict[str, dict[str, float]] = {}
    seq = tr.sequence or ()
    for a, b in itertools.pairwise(seq):
        counts.setdefault(a, {}).setdefault(b, 0.0)
        counts[a][b] += 1.0
    return counts


def measured_choices(positions: Sequence[Sequence[Block]],
                     measured: Mapping[tuple[str, ...], float]) -> dict[tuple[int, ...], float]:
    """Measured accuracies keyed by option index per position (what ``TaskSpec`` looks up). Options
    with the same block (a variant that leaves a position as it is, like structured pruning of a
    block with no inner channels) share its measurement: every choice of the same blocks gets it."""
    index: list[dict[str, list[int]]] = []
    for pos in positions:
        ix: dict[str, list[int]] = {}
        for i, o in enumerate(pos):
            ix.setdefault(o.digest, []).append(i)
        index.append(ix)
    out: dict[tuple[int, ...], float] = {}
    for digests, acc in measured.items():
        if len(digests) == len(index) and all(d in ix for d, ix in zip(digests, index)):
            for choice in itertools.product(*(ix[d] for d, ix in zip(digests, index))):
                out[choice] = acc
    return out


def build_problem(workload: Workload, spec: SoCSpec, pool: Pool, profile: Profile,
                  accuracy: Mapping[str, AccuracyTerms | None], base_dir: Path,
                  memory_budget_mb: float | None = None) -> Problem:
    """The scheduler's numbers for ``workload`` from the pool, the profile and the accuracy terms."""
    latency: dict[str, dict[str, float]] = {}
    source: dict[str, str] = {}
    for e in profile.entries:
        latency.setdefault(e.digest, {})[e.processor] = e.latency_ms
        source[e.digest] = e.source if source.get(e.digest, e.source) == e.source else "mixed"
    tasks = []
    for task in workload.tasks:
        model = task.model
        terms = accuracy.get(model)
        positions = []
        output_mb = []
        for p in range(pool.positions(model)):
            options = []
            for variant in pool.variants(model):
                b = pool.block(model, p, variant)
                options.append(Block(variant=variant, digest=b.digest, memory_mb=b.param_bytes / MB,
                                      latency_ms=dict(latency.get(b.digest, {})),
                                      accuracy_delta=terms.term(p, variant) if terms else 0.0,
                                      latency_source=source.get(b.digest, "modelled")))
            positions.append(tuple(options))
            output_mb.append(pool.block(model, p, "dense").activation_bytes / MB)
        tasks.append(TaskSpec(
            name=task.name, model=model, latency_slo_ms=task.slo.latency_ms, min_accuracy=task.slo.min_accuracy,
            rate_hz=mean_rate_hz(task.arrival, base_dir=base_dir), positions=tuple(positions),
            sustained_rate_hz=sustained_rate_hz(task.arrival, base_dir=base_dir),
            output_mb=tuple(output_mb), base_accuracy=terms.base_accuracy if terms else None,
            accuracy_floor=terms.floor if terms and terms.form == "multiplicative" else None,
            measured_accuracy=measured_choices(positions, terms.measured) if terms else {},
        ))
    assert workload.scenario is not None
    bytes_per_ms = 1e9 / 1e3 / MB
    return Problem(
        tasks=tuple(tasks),
        processors=tuple(ProcessorInfo(p.name, p.kind) for p in spec.processors),
        memory_budget_mb=memory_budget_mb or workload.scenario.memory_budget_mb,
        transfer_latency_ms=spec.transfer.latency_us / 1e3,
        transfer_mb_per_ms=spec.transfer.bandwidth_gbps * bytes_per_ms,
        storage_mb_per_ms=spec.storage_read_gbps * bytes_per_ms,
        transitions=_transitions(workload),
    )


def assemble(workload: Workload, *, base_dir: Path, cache_dir: Path, soc: SoC | None = None,
             progress: bool = True, source: str = "workload", factories: Factories | None = None,
             evaluators: Mapping[str, UserEvaluator] | None = None) -> Assembled:
    """Pool, profile and accuracy for ``workload`` (cached), and the scheduler problem built from them.

    ``factories``: in-memory model factories that the workload's ``module`` entries name;
    ``evaluators``: users' own evaluations of those models (besides the workload's ``evaluation:``).
    """
    soc = soc or workload.soc
    if soc is None or workload.scenario is None:
        raise InputError([Complaint("soc" if soc is None else "scenario", "a workload with an SoC and a scenario",
                                    "nothing", source)])
    pool = workload_pool(workload, cache_dir, progress, source, factories)
    spec: SoCSpec = soc
    profile = profile_pool(spec, pool, cache_dir, progress, idle_ms=idle_gap_ms(workload, base_dir))
    users = user_evaluators(workload, source, evaluators)
    accuracy = {m: accuracy_terms(pool, m, cache_dir, progress, users, source) for m in pool.models()}
    problem = build_problem(workload, spec, pool, profile, accuracy, base_dir)
    return Assembled(workload, spec, pool, profile, problem, {k: v for k, v in accuracy.items() if v is not None},
                     users)
