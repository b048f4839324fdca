"""The workload language: typed, frozen objects for SoCs, models, tasks and scenarios.

YAML becomes these objects here, once, with located errors (see
:func:`load_workload`). Code below this line receives validated objects and
never re-checks raw dicts.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from backends.processor import Fraction, Name, NonNegative, Positive, SoCSpec, Spec
from scheduler import registry
from sparseloom.errors import InputError, Complaint
from sparseloom.yamlsource import KeyPath, Located, format_path, load

SparsityPattern = Literal["structured", "unstructured", "2:4", "block"]
VariantPattern = Literal["structured", "unstructured", "2:4", "block", "int8"]
# Built-in zoo models (stitching.zoo). Profiling-only models carry no accuracy.
ZooName = Literal[
    "digits_cnn", "digits_resnet", "minilm", "resnet50", "bert_base", "vit_s", "wav2vec2_base"
]


# Base of every workload object: frozen, unknown keys rejected (the SoC types' base).
Schema = Spec


class SoC(SoCSpec):
    """A heterogeneous system-on-chip (:class:`backends.processor.SoCSpec`, the one definition of the
    SoC types) that loads itself from YAML."""

    @classmethod
    def load(cls, path: str | Path) -> SoC:
        """The SoC of a YAML file (an SoC file, or a workload that has one), validated; InputError otherwise."""
        workload = load_workload(path)
        if workload.soc is None:
            raise InputError(
                [Complaint("soc", "an 'soc' section", "none", file=str(path))]
            )
        return workload.soc

    @classmethod
    def of(cls, spec: SoCSpec) -> SoC:
        """``spec`` as this type (same fields, validated again)."""
        return spec if isinstance(spec, SoC) else cls.model_validate(spec, from_attributes=True)


class Partition(Schema):
    """How to cut a model into blocks: N blocks of balanced FLOPs, or named module boundaries."""

    blocks: Annotated[int, Field(ge=1, le=64)] | None = None
    boundaries: Annotated[tuple[str, ...], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Partition:
        if (self.blocks is None) == (self.boundaries is None):
            raise ValueError(
                "give exactly one of 'blocks' (a count) or 'boundaries' (module names)"
            )
        return self


class VariantSpec(Schema):
    """Which sparse variants to build: a pattern and its levels."""

    pattern: VariantPattern
    levels: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = ()
    block_size: Annotated[int, Field(ge=2, le=256)] = 16
    # The weight norm that ranks channels for structured pruning (torch-pruning's MagnitudeImportance).
    importance: Literal["l1", "l2"] = "l1"

    @model_validator(mode="after")
    def _levels(self) -> VariantSpec:
        if self.pattern in ("structured", "unstructured", "block") and not self.levels:
            raise ValueError(
                f"pattern '{self.pattern}' needs 'levels', for example [0.3, 0.5]"
            )
        if self.pattern in ("2:4", "int8") and self.levels:
            raise ValueError(
                f"pattern '{self.pattern}' has a fixed level; remove 'levels'"
            )
        if self.importance != "l1" and self.pattern != "structured":
            raise ValueError(
                f"'importance' ranks channels for pattern 'structured' only, not '{self.pattern}'"
            )
        return self


class Evaluation(Schema):
    """A user's metric for a ``module`` model: ``fn(module) -> float`` in [0, 1], higher is better."""

    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    # Seconds one call may take (default: stitching.zoo.evaluate.EVALUATE_LIMIT_S).
    limit_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class ModelSpec(Schema):
    """A base model: a zoo name, or a user's factory given by import path (with, optionally, the
    user's own evaluation of it)."""

    name: Name
    zoo: ZooName | None = None
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = (
        None
    )
    input_shape: tuple[Annotated[int, Field(ge=1)], ...] | None = None
    partition: Partition = Partition(blocks=4)
    variants: tuple[VariantSpec, ...] = ()
    accuracy: Fraction | None = None
    evaluation: Evaluation | None = None

    @model_validator(mode="after")
    def _source(self) -> ModelSpec:
        if (self.zoo is None) == (self.module is None):
            raise ValueError(
                "give exactly one of 'zoo' (a built-in name) or 'module' ('pkg.mod:factory')"
            )
        if self.module is not None and self.input_shape is None:
            raise ValueError(
                "a 'module' model needs 'input_shape', for example [1, 3, 224, 224]"
            )
        if self.evaluation is not None and self.zoo is not None:
            raise ValueError("'evaluation' is for 'module' models: a zoo model has its own")
        return self


class SLO(Schema):
    """Service-level objective of a task."""

    latency_ms: Annotated[float, Field(gt=0, le=600_000)]
    min_accuracy: Fraction = 0.0


class Periodic(Schema):
    process: Literal["periodic"]
    period_ms: Positive
    jitter_ms: NonNegative = 0.0


class Poisson(Schema):
    process: Literal["poisson"]
    rate_hz: Positive


class Bursty(Schema):
    """On/off Markov-modulated Poisson process."""

    process: Literal["bursty"]
    rate_on_hz: Positive
    rate_off_hz: NonNegative = 0.0
    mean_on_s: Positive
    mean_off_s: Positive


class Trace(Schema):
    """Arrival timestamps (seconds, one per line) from a CSV file, relative to the workload file."""

    process: Literal["trace"]
    file: Annotated[str, Field(min_length=1)]


Arrival = Annotated[Periodic | Poisson | Bursty | Trace, Field(discriminator="process")]


class SLOChange(Schema):
    at_s: NonNegative
    latency_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None
    min_accuracy: Fraction | None = None

    @model_validator(mode="after")
    def _some(self) -> SLOChange:
        if self.latency_ms is None and self.min_accuracy is None:
            raise ValueError("an SLO change needs 'latency_ms' or 'min_accuracy'")
        return self


class Task(Schema):
    """A stream of requests for one base model."""

    name: Name
    model: Name
    slo: SLO
    arrival: Arrival
    slo_changes: tuple[SLOChange, ...] = ()


class Transitions(Schema):
    """Task-transition pattern for multi-task switching: a sequence or a Markov matrix."""

    sequence: tuple[Name, ...] | None = None
    matrix: dict[Name, dict[Name, Fraction]] | None = None
    dwell_s: Positive = 1.0

    @model_validator(mode="after")
    def _one(self) -> Transitions:
        if (self.sequence is None) == (self.matrix is None):
            raise ValueError("give exactly one of 'sequence' or 'matrix'")
        for src, row in (self.matrix or {}).items():
            if row and abs(sum(row.values()) - 1.0) > 1e-6:
                raise ValueError(
                    f"row '{src}' of 'matrix' sums to {sum(row.values()):g}, not 1"
                )
        return self


class Scenario(Schema):
    """How to run a workload: duration, seeds, memory budget, policies to compare."""

    name: Name
    duration_s: Positive
    warmup_s: NonNegative = 0.0
    seed: Annotated[int, Field(ge=0)] = 0
    seeds: Annotated[int, Field(ge=1, le=100)] = 1
    memory_budget_mb: Positive
    policies: Annotated[tuple[Name, ...], Field(min_length=1)] = ("sparseloom",)
    transitions: Transitions | None = None

    @model_validator(mode="after")
    def _warmup(self) -> Scenario:
        if self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s ({self.warmup_s:g}) must be shorter than duration_s ({self.duration_s:g})"
            )
        return self


class Workload(Schema):
    """One YAML document: an SoC file (``soc`` only) or a full workload."""

    soc: SoC | None = None
    models: tuple[ModelSpec, ...] = ()
    tasks: tuple[Task, ...] = ()
    scenario: Scenario | None = None
    description: str = ""

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)


# ---------------------------------------------------------------- error text


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types an annotation may hold (Optional, Annotated and Union flattened)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg)]
    return [tp]


def _descend(loc: tuple[Any, ...]) -> tuple[KeyPath, list[Any]]:
    """Turn a pydantic location into a display path, and find the types found there.

    Pydantic puts discriminator tags (``'poisson'``) into locations; they are
    not keys of the file, so they are dropped from the path.
    """
    path: list[str | int] = []
    here: list[Any] = [Workload]
    for part in loc:
        nxt: list[Any] = []
        consumed = False
        for tp in here:
            origin = typing.get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if isinstance(part, str):
                    fields = {f.alias or n: f for n, f in tp.model_fields.items()}
                    if part in fields:
                        nxt += _unwrap(fields[part].annotation)
                        consumed = True
                    elif "process" in tp.model_fields and part in typing.get_args(
                        _unwrap(tp.model_fields["process"].annotation)[0]
                    ):
                        nxt.append(tp)  # discriminator tag
            elif origin in (tuple, list) and isinstance(part, int):
                nxt += _unwrap(typing.get_args(tp)[0])
                consumed = True
            elif origin is dict and isinstance(part, str):
                nxt += _unwrap(typing.get_args(tp)[1])
                consumed = True
        if consumed or not nxt:
            path.append(part)
        here = nxt or here
    return tuple(path), here


def _known_keys(types_here: list[Any]) -> list[str]:
    keys: list[str] = []
    for tp in types_here:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys += [f.alias or n for n, f in tp.model_fields.items()]
    return keys


def _problem(err: Any, located: Located) -> Complaint:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, types_here = _descend(loc[:-1])
        key = str(loc[-1])
        path: KeyPath = parent + (key,)
        known = _known_keys(types_here)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else "one of: " + ", ".join(sorted(known))
        )
        file, line = located.where(path)
        return Complaint(
            format_path(path),
            f"a known key ({hint})",
            f"unknown key '{key}'",
            file,
            line,
        )
    path, _ = _descend(loc)
    file, line = located.where(path)
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Input should be "):
        msg = msg.removeprefix(prefix)
    if kind == "missing":
        return Complaint(
            format_path(path), "this key (it is required)", "nothing", file, line
        )
    found = "" if kind in ("value_error",) else f"{err.get('input')!r}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        msg = f"'process' to be one of {ctx.get('expected_tags', '')}"
        found = repr(ctx.get("tag", ""))
    msg = msg.replace("a valid tuple", "a list").replace(
        "Tuple should", "the list should"
    )
    return Complaint(format_path(path), msg, found, file, line)


def _drop_echoes(errors: list[Any]) -> list[Any]:
    """Drop 'list too short' errors that only echo a failed item inside that list."""
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(
                len(o) > len(e["loc"]) and o[: len(e["loc"])] == tuple(e["loc"])
                for o in locs
            )
        )
    ]


# ------------------------------------------------------------- cross checks


def _cross_checks(w: Workload, located: Located, base_dir: Path) -> list[Complaint]:
    problems: list[Complaint] = []

    def add(path: KeyPath, expected: str, found: str) -> None:
        file, line = located.where(path)
        problems.append(Complaint(format_path(path), expected, found, file, line))

    def unique(items: tuple[Any, ...], key: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                add((key, i, "name"), "a unique name", f"'{item.name}' again")
            seen.add(item.name)

    if w.soc is None and not w.tasks and not w.models:
        add((), "at least one of 'soc', 'models', 'tasks'", "none of them")
    if w.soc is not None:
        seen: set[str] = set()
        for i, proc in enumerate(w.soc.processors):
            if proc.name in seen:
                add(
                    ("soc", "processors", i, "name"),
                    "a unique processor name",
                    f"'{proc.name}' again",
                )
            seen.add(proc.name)
    unique(w.models, "models")
    unique(w.tasks, "tasks")
    model_names = [m.name for m in w.models]
    task_names = [t.name for t in w.tasks]
    for i, task in enumerate(w.tasks):
        if task.model not in model_names:
            close = difflib.get_close_matches(task.model, model_names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            add(
                ("tasks", i, "model"),
                f"a model defined under 'models': {', '.join(model_names) or 'none defined'}{hint}",
                f"'{task.model}'",
            )
        if (
            isinstance(task.arrival, Trace)
            and not (base_dir / task.arrival.file).is_file()
        ):
            add(
                ("tasks", i, "arrival", "file"),
                "an existing CSV file of timestamps",
                f"no such file {base_dir / task.arrival.file}",
            )
    if w.tasks:
        if w.soc is None:
            add(("soc",), "an SoC (inline or through 'include:')", "nothing")
        if w.scenario is None:
            add(("scenario",), "a scenario section", "nothing")
    if w.scenario is not None:
        if w.soc is not None and w.scenario.memory_budget_mb > w.soc.memory_mb:
            add(
                ("scenario", "memory_budget_mb"),
                f"at most the SoC's memory ({w.soc.memory_mb:g} MB)",
                f"{w.scenario.memory_budget_mb:g}",
            )
        known = registry.names()
        for j, policy in enumerate(w.scenario.policies):
            if policy not in known:
                close = difflib.get_close_matches(policy, known, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else "one of: " + ", ".join(known)
                )
                add(
                    ("scenario", "policies", j),
                    f"a known policy ({hint})",
                    f"'{policy}'",
                )
        tr = w.scenario.transitions
        if tr is not None:
            for j, name in enumerate(tr.sequence or ()):
                if name not in task_names:
                    add(
                        ("scenario", "transitions", "sequence", j),
                        "a task name",
                        f"'{name}'",
                    )
            for src, row in (tr.matrix or {}).items():
                for dst in (src, *row):
                    if dst not in task_names:
                        add(
                            ("scenario", "transitions", "matrix", src),
                            "task names only",
                            f"'{dst}'",
                        )
    return problems


def parse(located: Located, base_dir: Path) -> Workload:
    """Validate located YAML data into a :class:`Workload`, or raise :class:`InputError`."""
    try:
        workload = Workload.model_validate(located.data)
    except ValidationError as exc:
        raise InputError(
            [_problem(e, located) for e in _drop_echoes(exc.errors())]
        ) from None
    problems = _cross_checks(workload, located, base_dir)
    if problems:
        raise InputError(problems)
    return workload


def load_workload(path: str | Path) -> Workload:
    """Load and validate one YAML file (resolving includes). Raises :class:`InputError`."""
    located = load(path)
    return parse(located, Path(path).parent)
