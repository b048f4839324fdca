"""Arguments and steps shared by the commands that assemble a workload (plan, simulate, profile)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sparseloom.errors import InputError, Complaint
from sparseloom.workload import SoC, Workload, load_workload

if TYPE_CHECKING:
    from sparseloom.assemble import Assembled
    from sparseloom.sim import Engine


def add_workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workload", metavar="WORKLOAD", help="workload YAML file")
    p.add_argument("--soc", type=Path, metavar="FILE", help="run on this SoC file instead of the workload's")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="pools, profiles, compiled blocks ($SPARSELOOM_CACHE or ~/.cache/sparseloom)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """--engine and --address: where the independent simulations run."""
    from sparseloom.sim.parallel import ENGINES

    p.add_argument("--engine", choices=ENGINES, default="process",
                   help="run the simulations in local processes (default) or on Ray (pip install 'sparseloom[cluster]')")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: an existing Ray cluster (host:port, ray://host:port or auto); "
                        "default: Ray starts on this machine")


def engine(args: argparse.Namespace) -> Engine:
    """The engine the flags ask for; InputError (exit 2) for an address without Ray, a missing Ray,
    or an address nothing answers at."""
    from sparseloom.sim import Engine
    from sparseloom.sim.cluster import check_address, require_ray

    if args.engine != "ray":
        if args.address is not None:
            raise InputError([Complaint("--address", "--engine ray with it", args.address)])
        return Engine()
    require_ray()
    if args.address is not None:
        check_address(args.address)
    return Engine("ray", args.address)


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
            raise InputError([Complaint("soc", "an SoC file (a 'soc:' section)", "none", str(args.soc))])
    if soc is None or workload.scenario is None or not workload.tasks:
        raise InputError([Complaint("", "a workload with 'soc', 'tasks' and 'scenario'", "an incomplete workload",
                                  args.workload)])
    if workload.scenario.memory_budget_mb > soc.memory_mb:
        raise InputError([Complaint("scenario.memory_budget_mb", f"at most the SoC's memory ({soc.memory_mb:g} MB)",
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
        raise InputError([Complaint("", "models that can be pooled, profiled and planned", str(err),
                                  args.workload)]) from None
