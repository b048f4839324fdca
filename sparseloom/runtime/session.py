"""A YAML workload made ready to run on this host: assembled, restricted to the host, with real inputs.

Shared by ``sparseloom run`` and ``sparseloom calibrate``; ``sparseloom.assemble``
builds the pool, profile and planning problem (imported when first needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backends.processor import SoCSpec
from scheduler import registry
from scheduler.problem import Problem
from sparseloom.errors import InputError, bad_argument
from sparseloom.errors import Complaint
from sparseloom.runtime.host import processors_present, restrict
from sparseloom.runtime.inputs import cycling, zoo_examples
from sparseloom.sim.experiment import Experiment, slo_changes
from sparseloom.sim.runner import Arrivals, arrival_specs, arrivals_in
from sparseloom.workload import SoC, Workload, load_workload


@dataclass(frozen=True)
class Session:
    """Everything a real run of a workload needs."""

    workload: Workload
    assembled: Any  # sparseloom.assemble.Assembled
    problem: Problem  # restricted to the processors present here
    soc: SoCSpec
    pool: Any
    policy: str
    experiment: Experiment  # one seed: the run's duration, warm-up, seed, SLO changes and transitions
    arrivals: Arrivals  # that seed's arrivals
    inputs: Callable[[str], tuple[torch.Tensor, ...]]
    cache_dir: Path


def prepare(
    path: Path,
    *,
    soc_path: Path | None,
    policy: str | None,
    duration_s: float | None,
    seed: int | None,
    cache_dir: Path,
    progress: bool,
) -> Session:
    """Load, validate and assemble ``path`` and generate its seeded arrivals; InputError on bad input."""
    workload = load_workload(path)
    if soc_path is not None:
        workload = workload.model_copy(update={"soc": SoC.load(soc_path)})
    if workload.soc is None:
        raise InputError([Complaint("soc", "an 'soc' section or --soc FILE", "none", file=str(path))])
    if not workload.tasks:
        raise InputError([Complaint("tasks", "at least one task", "none", file=str(path))])
    scenario = workload.scenario
    duration = duration_s if duration_s is not None else (scenario.duration_s if scenario else None)
    if duration is None or not duration > 0:
        raise bad_argument("--duration", "seconds above zero (or a scenario with duration_s)", duration)
    name = policy or (scenario.policies[0] if scenario else "sparseloom")
    if name not in registry.names():
        raise bad_argument("--policy", f"one of {', '.join(registry.names())}", name)
    warmup = scenario.warmup_s if scenario is not None and scenario.warmup_s < duration else 0.0
    run_seed = seed if seed is not None else (scenario.seed if scenario else 0)
    from sparseloom.assemble import assemble  # the pool/profile/problem builder

    try:
        assembled = assemble(workload, base_dir=path.parent, cache_dir=cache_dir, soc=workload.soc, progress=progress)
    except InputError:
        raise
    except ValueError as err:
        raise InputError([Complaint("models", "models that can be partitioned, pooled and profiled", str(err), str(path))]) from None
    try:
        problem = restrict(assembled.problem, processors_present(assembled.soc))
    except ValueError as err:
        raise InputError([Complaint("soc.processors", "a processor present on this host", str(err), str(path))]) from None
    experiment = Experiment(duration, warmup, run_seed, 1, slo_changes(workload.tasks),
                            scenario.transitions if scenario else None, str(path.parent))
    arrivals = arrivals_in(experiment, arrival_specs(workload.tasks), run_seed)
    examples = {}
    for t in workload.tasks:
        spec = workload.model(t.model)
        if spec.zoo is None:
            raise bad_argument(f"models.{spec.name}", "a zoo model (real inputs come from its evaluation set)", spec.module)
        examples[t.name] = zoo_examples(spec.zoo, cache_dir)
    return Session(
        workload=workload,
        assembled=assembled,
        problem=problem,
        soc=assembled.soc,
        pool=assembled.pool,
        policy=name,
        experiment=experiment,
        arrivals=arrivals,
        inputs=cycling(examples),
        cache_dir=cache_dir,
    )
