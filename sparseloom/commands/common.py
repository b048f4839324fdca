"""Arguments and steps shared by the commands that assemble a workload (plan, simulate, profile)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sparseloom.errors import InputError, Problem
from sparseloom.workload import SoC, Workload, load_workload

if TYPE_CHECKING:
    from sparseloom.assemble import Assembled


def add_workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workload", metavar="WORKLOAD", help="workload YAML file")
    p.add_argument("--soc", type=Path, metavar="FILE", help="run on this SoC file instead of the workload's")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="pools, profiles, compiled blocks ($SPARSELOOM_CACHE or ~/.cache/sparseloom)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cache_dir(args: argparse.Namespace) -> Path:
    from stitching.zoo import default_cache_dir

    return Path(args.cache) if args.cache else default_cache_dir()


def load(args: argparse.Namespace) -> tuple[Workload, SoC]:
    """The validated workload and the SoC it runs on (``--soc`` wins)."""
    workload = load_workload(args.workload)
    soc = workload.soc
    if args.soc is not None:
        soc = load_workload(args.soc).soc
        if soc is None:
            raise InputError([Problem("soc", "an SoC file (a 'soc:' section)", "none", str(args.soc))])
    if soc is None or workload.scenario is None or not workload.tasks:
        raise InputError([Problem("", "a workload with 'soc', 'tasks' and 'scenario'", "an incomplete workload",
                                  args.workload)])
    if workload.scenario.memory_budget_mb > soc.memory_mb:
        raise InputError([Problem("scenario.memory_budget_mb", f"at most the SoC's memory ({soc.memory_mb:g} MB)",
                                  f"{workload.scenario.memory_budget_mb:g}", args.workload)])
    return workload, soc


def assemble(args: argparse.Namespace, loaded: tuple[Workload, SoC] | None = None) -> Assembled:
    """Pool, profile, accuracy and problem for the command's workload (all cached).

    ``loaded`` is what :func:`load` already returned, so the YAML is not parsed twice.
    """
    from sparseloom.assemble import assemble as run

    workload, soc = loaded or load(args)
    try:
        return run(workload, base_dir=Path(args.workload).parent, cache_dir=cache_dir(args), soc=soc,
                   progress=not args.no_progress, source=args.workload)
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError([Problem("", "models that can be pooled, profiled and planned", str(err),
                                  args.workload)]) from None
