"""The Python API for multi-DNN pipelines: bring models, build pool/profile/plan, run, change SLOs, read stats.

::

    import sparseloom as sl
    soc = sl.SoC.load("workloads/socs/host.yaml")
    with sl.Pipeline(soc, memory_budget="2GB") as pipe:
        pipe.add_task("digits", model="digits_cnn", slo=sl.SLO(latency_ms=5, min_accuracy=0.9), rate_hz=50)
        pipe.build()                      # pool, profile, plan (cached on disk)
        out = pipe.submit("digits", x).result()
        pipe.set_slo("digits", latency_ms=2)
        print(pipe.stats().describe())

Bad use (an unknown task, an SLO out of range, a model that cannot be
partitioned, a bad memory size) raises :class:`sparseloom.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self

import torch
from pydantic import ValidationError

from backends.processor import SoCSpec
from scheduler import registry
from scheduler.plan import Plan
from scheduler.problem import Problem
from sparseloom import workload as wl
from sparseloom.core.overload import MAX_IN_FLIGHT
from sparseloom.errors import Complaint, InputError, bad_argument
from sparseloom.runtime import Runtime, RuntimeStats, processors_present, restrict
from stitching import zoo
from stitching.user_model import check_partition
from stitching.zoo.evaluate import EVALUATE_LIMIT_S, UserEvaluator

_UNITS = {"": 1.0, "b": 2**-20, "k": 2**-10, "kb": 1e3 / 2**20, "kib": 2**-10, "m": 1.0, "mb": 1e6 / 2**20,
          "mib": 1.0, "g": 2**10, "gb": 1e9 / 2**20, "gib": 2**10, "t": 2**20, "tb": 1e12 / 2**20, "tib": 2**20}


def parse_memory_mb(value: str | float, name: str = "memory_budget") -> float:
    """A memory size in MiB: a number (MiB) or a string such as "2GB", "512MiB", "1.5 GiB"."""
    if isinstance(value, bool):
        raise bad_argument(name, "a memory size such as '2GB', '512MB' or a number of MiB", value)
    if isinstance(value, (int, float)):
        mb = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise bad_argument(name, "a memory size such as '2GB', '512MB', '1.5GiB' or a number of MiB", value)
        mb = float(m.group(1)) * _UNITS[unit]
    if not mb > 0:
        raise bad_argument(name, "a memory size above zero", value)
    return mb


def _complaints(err: ValidationError, where: str) -> InputError:
    problems = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ").removeprefix("Input should be ")
        found = "" if e["type"] == "value_error" else repr(e.get("input"))
        problems.append(Complaint(f"{where}.{loc}" if loc else where, msg, found))
    return InputError(problems)


class SLO(wl.SLO):
    """A task's service-level objective: ``latency_ms`` in (0, 600000], ``min_accuracy`` in [0, 1]."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _complaints(err, "SLO") from None


class Pipeline:
    """Several models as tasks on one SoC, planned by a policy and run for real on this host's processors.

    ``soc``: a validated :class:`sparseloom.SoC` or the path of its YAML file.
    ``memory_budget``: for resident blocks, e.g. "2GB" (default: the SoC's memory).
    ``policy``: a registered policy name (see ``scheduler.registry.names()``).
    ``cache_dir``: where pools, profiles and compiled blocks are kept between runs.
    ``max_in_flight`` / ``shed_factor``: admission control (see :class:`sparseloom.runtime.Runtime`).
    """

    def __init__(
        self,
        soc: SoCSpec | str | Path,
        memory_budget: str | float | None = None,
        *,
        policy: str = "sparseloom",
        cache_dir: str | Path | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        shed_factor: float | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(soc, (str, Path)):
            soc = wl.SoC.load(soc)
        if not isinstance(soc, SoCSpec):
            raise bad_argument("soc", "a sparseloom.SoC or the path of an SoC YAML file", soc)
        soc = wl.SoC.of(soc)
        if policy not in registry.names():
            raise bad_argument("policy", f"one of {', '.join(registry.names())}", policy)
        if max_in_flight < 1:
            raise bad_argument("max_in_flight", "an integer >= 1", max_in_flight)
        if shed_factor is not None and not shed_factor > 0:
            raise bad_argument("shed_factor", "a number above zero, or None", shed_factor)
        self.soc = soc
        self.memory_budget_mb = soc.memory_mb if memory_budget is None else parse_memory_mb(memory_budget)
        self.policy_name = policy
        self.cache_dir = Path(cache_dir) if cache_dir is not None else zoo.default_cache_dir()
        self.max_in_flight = max_in_flight
        self.shed_factor = shed_factor
        self.progress = progress
        self._models: dict[str, wl.ModelSpec] = {}
        self._tasks: dict[str, wl.Task] = {}
        # The live torch modules given to add_task, by the factory name their model spec carries.
        self._factories: dict[str, Callable[[], torch.nn.Module]] = {}
        # The users' own evaluations, by model name (add_task's ``evaluate``).
        self._evaluators: dict[str, UserEvaluator] = {}
        self._runtime: Runtime | None = None
        self.assembled: Any = None

    # -- describing the workload

    def add_task(
        self,
        name: str,
        model: str | wl.ModelSpec | torch.nn.Module,
        slo: wl.SLO,
        rate_hz: float = 10.0,
        *,
        partition: int | Sequence[str] = 4,
        variants: Sequence[wl.VariantSpec | dict[str, Any]] | None = None,
        input_shape: Sequence[int] | None = None,
        example_input: torch.Tensor | None = None,
        evaluate: Callable[[torch.nn.Module], float] | None = None,
        evaluate_limit_s: float = EVALUATE_LIMIT_S,
    ) -> None:
        """Add a task: a stream of requests for ``model`` under ``slo``, expected at ``rate_hz``.

        ``model``: a zoo name (``sparseloom.zoo_names()``), a ``"pkg.mod:factory"`` import path
        (with ``input_shape``), a :class:`sparseloom.workload.ModelSpec`, or a ``torch.nn.Module``
        whose top-level children run one after the other (with ``input_shape`` or
        ``example_input``, batch 1). Tasks naming the same model share its blocks. ``partition``:
        a block count or the child names to cut after. ``variants``: default structured-50% for
        every model (a user's module is pruned through torch-pruning's dependency graph; children
        without inner channels stay dense).
        A module is partitioned and checked here: one that cannot be raises ``InputError``.
        ``evaluate``: for a user's model (a module or a factory), the user's metric on the user's
        data, ``evaluate(module) -> float`` in [0, 1], higher is better; the pool measures each
        variant with it (at most ``evaluate_limit_s`` a call) and the estimator fits the stitched
        variants from those measurements, as for the zoo. Without it the model's accuracy is unknown.
        """
        if self._runtime is not None:
            raise bad_argument("add_task", "tasks added before build()", name)
        if not isinstance(name, str) or name in self._tasks:
            raise bad_argument("name", "a new task name" + (f" (not one of {', '.join(self._tasks)})" if self._tasks else ""), name)
        if not isinstance(slo, wl.SLO):
            raise bad_argument("slo", "a sparseloom.SLO(latency_ms=..., min_accuracy=...)", slo)
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not rate_hz > 0:
            raise bad_argument("rate_hz", "an arrival rate above zero (requests per second)", rate_hz)
        if variants is None:
            variants = ({"pattern": "structured", "levels": [0.5]},)
        if evaluate is not None and not callable(evaluate):
            raise bad_argument(f"add_task({name!r}).evaluate", "a function evaluate(module) -> float in [0, 1]", evaluate)
        if isinstance(evaluate_limit_s, bool) or not isinstance(evaluate_limit_s, (int, float)) or not (
                0 < evaluate_limit_s <= 3600):
            raise bad_argument(f"add_task({name!r}).evaluate_limit_s", "seconds in (0, 3600]", evaluate_limit_s)
        if isinstance(model, torch.nn.Module):
            spec = self._module_spec(name, model, partition, variants, input_shape, example_input)
        else:
            spec = self._model_spec(name, model, partition, variants, input_shape)
        if evaluate is not None:
            if spec.module is None:
                raise bad_argument(f"add_task({name!r}).evaluate", "a user's model (a module or 'pkg.mod:factory'); "
                                   "a zoo model has its own evaluation", spec.zoo)
            data = f"{getattr(evaluate, '__module__', '?')}.{getattr(evaluate, '__qualname__', repr(evaluate))}"
            known = self._evaluators.get(spec.name)
            if known is not None and known.fn is not evaluate:
                raise bad_argument(f"add_task({name!r}).evaluate", f"the evaluate already given for model {spec.name!r}",
                                   data)
            self._evaluators[spec.name] = UserEvaluator(evaluate, spec.name, data, float(evaluate_limit_s))
        try:
            task = wl.Task.model_validate(
                {"name": name, "model": spec.name, "slo": slo, "arrival": {"process": "poisson", "rate_hz": rate_hz}}
            )
        except ValidationError as err:
            raise _complaints(err, f"add_task({name!r})") from None
        self._models.setdefault(spec.name, spec)
        self._tasks[name] = task

    def _model_spec(
        self,
        task: str,
        model: Any,
        partition: int | Sequence[str],
        variants: Sequence[Any],
        input_shape: Sequence[int] | None,
    ) -> wl.ModelSpec:
        if isinstance(model, wl.ModelSpec):
            spec = model
        else:
            if isinstance(model, str) and model in zoo.names():
                source: dict[str, Any] = {"zoo": model}
            elif isinstance(model, str) and ":" in model:
                source = {"module": model, "input_shape": None if input_shape is None else list(input_shape)}
            else:
                raise bad_argument(
                    f"add_task({task!r}).model",
                    "a model SparseLoom can partition into blocks: a zoo name (one of "
                    f"{', '.join(zoo.names())}), a 'pkg.mod:factory' import path with input_shape, "
                    "a sparseloom.workload.ModelSpec or a torch.nn.Module",
                    model,
                )
            cut: dict[str, Any] = (
                {"blocks": partition} if isinstance(partition, int) else {"boundaries": list(partition)}
            )
            base = str(source.get("zoo") or str(source["module"]).rsplit(":", 1)[1])
            try:
                spec = wl.ModelSpec.model_validate(
                    {"name": base, **source, "partition": cut, "variants": list(variants)}
                )
            except ValidationError as err:
                raise _complaints(err, f"add_task({task!r}).model") from None
        return self._distinct(task, spec)

    def _module_spec(
        self,
        task: str,
        module: torch.nn.Module,
        partition: int | Sequence[str],
        variants: Sequence[Any],
        input_shape: Sequence[int] | None,
        example_input: torch.Tensor | None,
    ) -> wl.ModelSpec:
        """A model spec for a live module, registered as an in-memory factory and partitioned now."""
        if example_input is not None:
            if not isinstance(example_input, torch.Tensor):
                raise bad_argument(f"add_task({task!r}).example_input", "a tensor (batch 1)", type(example_input).__name__)
            input_shape = tuple(example_input.shape)
        if input_shape is None:
            raise bad_argument(f"add_task({task!r}).input_shape", "the module's input shape (batch 1) or example_input",
                               None)
        # Named by content, so a pool built for the same module (architecture and weights) is reused.
        digest = hashlib.sha256(repr(module).encode())
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        factory = f"pipeline.{re.sub(r'[^A-Za-z0-9_]', '_', task)}:m{digest.hexdigest()[:16]}"
        cut: dict[str, Any] = {"blocks": partition} if isinstance(partition, int) else {"boundaries": list(partition)}
        try:
            spec = wl.ModelSpec.model_validate({
                "name": re.sub(r"[^A-Za-z0-9_.-]", "-", type(module).__name__) or "model",
                "module": factory, "input_shape": list(input_shape), "partition": cut, "variants": list(variants)})
        except ValidationError as err:
            raise _complaints(err, f"add_task({task!r}).model") from None
        factories = {**self._factories, factory: lambda: module}
        try:
            check_partition(spec.name, factory, tuple(spec.input_shape or ()), spec.partition.blocks,
                            spec.partition.boundaries, factories,
                            export=any(p.executor == "tvm" for p in self.soc.processors))
        except ValueError as err:
            raise InputError([Complaint(
                f"add_task({task!r}).model",
                f"a torch.nn.Module whose top-level children run one after the other, cut into "
                f"{spec.partition.blocks or len(spec.partition.boundaries or ()) + 1} blocks that torch.export can trace",
                f"{type(module).__name__}: {err}")]) from None
        self._factories = factories
        return self._distinct(task, spec)

    def _distinct(self, task: str, spec: wl.ModelSpec) -> wl.ModelSpec:
        """``spec``, renamed after ``task`` when another model already has its name."""
        known = self._models.get(spec.name)
        return spec.model_copy(update={"name": f"{task}-{spec.name}"}) if known is not None and known != spec else spec

    def workload(self) -> wl.Workload:
        """The validated workload the pipeline describes (SoC, models, tasks, memory budget)."""
        if not self._tasks:
            raise bad_argument("tasks", "at least one task (add_task) before build()", "none")
        try:
            return wl.Workload.model_validate(
                {
                    "soc": self.soc,
                    "models": list(self._models.values()),
                    "tasks": list(self._tasks.values()),
                    "scenario": {"name": "pipeline", "duration_s": 60.0, "memory_budget_mb": self.memory_budget_mb},
                }
            )
        except ValidationError as err:
            raise _complaints(err, "Pipeline") from None

    # -- building and running

    def build(self) -> Plan:
        """Build the pool, profile and plan (all cached under ``cache_dir``) and start the runtime."""
        if self._runtime is not None:
            return self._runtime.plan
        # Imported when first needed: assembling pulls in pool building, profiling and TVM.
        from sparseloom.assemble import assemble

        work = self.workload()
        try:
            assembled = assemble(
                work, base_dir=Path.cwd(), cache_dir=self.cache_dir, soc=self.soc, progress=self.progress,
                factories=self._factories, evaluators=self._evaluators,
            )
        except InputError:
            raise
        except ValueError as err:
            # Lower packages say what is wrong (a partition that does not fit the model, ...) in ValueError.
            raise InputError([Complaint("Pipeline.build", "models that can be partitioned and pooled", str(err))]) from None
        self.assembled = assembled
        self._start(self._judged(assembled), assembled.soc, assembled.pool)
        assert self._runtime is not None
        return self._runtime.plan

    def _judged(self, assembled: Any) -> Problem:
        """The problem with the measured accuracy (the zoo's evaluator or the user's ``evaluate``) of
        every variant the policy's plan serves, so the plan the runtime makes on it carries measurements
        where it would otherwise carry estimates."""
        from sparseloom.sim.runner import judge
        from sparseloom.verdict import measure_served

        try:
            here = restrict(assembled.problem, processors_present(assembled.soc))
        except ValueError as err:
            raise bad_argument("soc", "an SoC with a processor present on this host", str(err)) from None
        policy = registry.create(self.policy_name)
        plans = {policy.name: policy.plan(here)}
        served = dataclasses.replace(assembled, problem=here)

        def plan_all(problem: Problem) -> None:
            plans[policy.name] = policy.plan(problem)

        # The simulator's verdict rounds: a measurement that refutes a planned variant's estimate
        # changes the plan, whose new variant is measured in turn.
        return judge(here, [policy], plans, (), lambda p: measure_served(served, p, self.cache_dir, self.progress)[0],
                     plan_all)

    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        soc: SoCSpec,
        pool: Any,
        *,
        policy: str = "sparseloom",
        cache_dir: str | Path,
        max_in_flight: int = MAX_IN_FLIGHT,
        shed_factor: float | None = None,
    ) -> Pipeline:
        """A running pipeline over an already-built planning problem (its options' digests in ``pool``).

        For callers that assemble problems themselves (``sparseloom run``, tests, research scripts).
        """
        # One SoC type (backends.processor.SoCSpec): every field is kept, nothing converted.
        pipe = cls(soc, problem.memory_budget_mb, policy=policy, cache_dir=cache_dir,
                   max_in_flight=max_in_flight, shed_factor=shed_factor, progress=False)
        for t in problem.tasks:
            pipe._tasks[t.name] = wl.Task.model_validate(
                {"name": t.name, "model": re.sub(r"[^A-Za-z0-9_.-]", "-", t.model) or "model",
                 "slo": {"latency_ms": t.latency_slo_ms, "min_accuracy": t.min_accuracy},
                 "arrival": {"process": "poisson", "rate_hz": max(t.rate_hz, 1e-9)}}
            )
        pipe._start(problem, soc, pool)
        return pipe

    def _start(self, problem: Problem, soc: SoCSpec, pool: Any) -> None:
        try:
            here = restrict(problem, processors_present(soc))
        except ValueError as err:
            raise bad_argument("soc", "an SoC with a processor present on this host", str(err)) from None
        self._runtime = Runtime(
            here,
            registry.create(self.policy_name),
            soc,
            pool,
            cache_dir=self.cache_dir / "compiled",
            max_in_flight=self.max_in_flight,
            shed_factor=self.shed_factor,
        )

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise bad_argument("Pipeline", "build() called first", "not built")
        return self._runtime

    @property
    def plan(self) -> Plan:
        return self.runtime.plan

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._tasks)

    def _task(self, task: str) -> str:
        if task not in self._tasks:
            known = ", ".join(self._tasks) or "none yet"
            raise bad_argument("task", f"a task of this pipeline ({known})", task)
        return task

    def submit(self, task: str, *inputs: torch.Tensor) -> Future[Any]:
        """Run one request of ``task``; a future of its real output (rejected: raises ``Rejected``)."""
        self._task(task)
        if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
            raise bad_argument("inputs", "the model's input tensors (batch 1)", inputs)
        return self.runtime.submit(task, *inputs)

    def set_slo(self, task: str, latency_ms: float | None = None, min_accuracy: float | None = None) -> Plan:
        """Change a task's SLO while running: switches stitched variant now, re-plans in the background."""
        self._task(task)
        if latency_ms is None and min_accuracy is None:
            raise bad_argument("set_slo", "latency_ms or min_accuracy", None)
        old = self._tasks[task].slo
        new = SLO(
            latency_ms=old.latency_ms if latency_ms is None else latency_ms,
            min_accuracy=old.min_accuracy if min_accuracy is None else min_accuracy,
        )
        self._tasks[task] = self._tasks[task].model_copy(update={"slo": new})
        if self._runtime is None:
            raise bad_argument("Pipeline", "build() called first", "not built")
        return self._runtime.set_slo(task, latency_ms=new.latency_ms, min_accuracy=new.min_accuracy)

    def stats(self) -> RuntimeStats:
        """Live statistics (measured): latency percentiles, violations, throughput, memory, variant per task."""
        return self.runtime.stats()

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
