"""Independent simulation jobs on Ray: a cluster at an address, or Ray started on this machine.

Ray is an optional extra (``pip install 'sparseloom[cluster]'``). Each job travels by value (a
pickled dataclass holding the problem, profile latencies, policy, arrivals and settings), so
workers need no shared cache path. A job whose worker dies is retried by Ray (``MAX_RETRIES``);
results are kept by job index, so a retried job counts once.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sparseloom.errors import InputError, Complaint

J = TypeVar("J")
R = TypeVar("R")

# Attempts after a worker dies mid-job (Ray's own default for tasks): a job that kills its worker
# every time fails the run after this many, instead of retrying for ever.
MAX_RETRIES = 3
# How long to wait for a cluster address to answer before failing: a cluster on a reachable network
# accepts a TCP connection within milliseconds; an unreachable one would otherwise hang ray.init.
CONNECT_TIMEOUT_S = 5.0


def require_ray() -> Any:
    """The ``ray`` module, or an InputError (exit 2) saying how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise InputError([Complaint("--engine", "Ray installed: pip install 'sparseloom[cluster]'", "ray")])
    import ray

    return ray


def check_address(address: str) -> None:
    """Fail fast, with a message, when nothing answers at a ``host:port`` (or ``ray://host:port``)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError([Complaint("--address", "host:port of a Ray cluster (or ray://host:port, or auto)", address)])
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise InputError([Complaint("--address", f"a Ray cluster answering within {CONNECT_TIMEOUT_S:g} s", f"{address} ({err})")]) from None


def connect(address: str | None) -> Any:
    """Ray, initialised once per process: joined to ``address``, or started here when None."""
    ray = require_ray()
    if not ray.is_initialized():
        if address is not None:
            check_address(address)
        # Ray started here runs this interpreter's code: its workers import from the driver's path
        # (a checkout or worktree on PYTHONPATH included), not only from what is installed.
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}} if address is None else None
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env=env)
    return ray


def ray_map(fn: Callable[[J], R], jobs: Sequence[J], address: str | None, bar: Any) -> list[R]:
    """``[fn(j) for j in jobs]`` on Ray, in job order; ``bar`` ticks as each job finishes."""
    ray = connect(address)
    remote = ray.remote(max_retries=MAX_RETRIES)(fn)
    refs = [remote.remote(job) for job in jobs]
    index = {ref: i for i, ref in enumerate(refs)}
    results: dict[int, R] = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            results[index[ref]] = ray.get(ref)
            bar.update()
    return [results[i] for i in range(len(jobs))]
