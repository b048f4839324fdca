"""SparseLoom: run several sparse DNNs at once on heterogeneous edge SoCs.

The pipeline API (``Pipeline``, ``SLO``, runtime statistics) is imported on
first use, so ``import sparseloom`` stays light for the CLI and YAML tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sparseloom.errors import InputError, Complaint
from sparseloom.workload import SoC, Workload, load_workload

if TYPE_CHECKING:
    from sparseloom.api import SLO, Pipeline, parse_memory_mb
    from sparseloom.runtime import Rejected, RuntimeStats, TaskStats

_LAZY = {
    "SLO": "sparseloom.api",
    "Pipeline": "sparseloom.api",
    "parse_memory_mb": "sparseloom.api",
    "Rejected": "sparseloom.runtime",
    "RuntimeStats": "sparseloom.runtime",
    "TaskStats": "sparseloom.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sparseloom' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def zoo_names() -> tuple[str, ...]:
    """Names of the built-in zoo models."""
    from stitching.zoo import names

    return names()


__all__ = [
    "SLO",
    "InputError",
    "Pipeline",
    "Complaint",
    "Rejected",
    "RuntimeStats",
    "SoC",
    "TaskStats",
    "Workload",
    "load_workload",
    "parse_memory_mb",
    "zoo_names",
]
__version__ = "0.1.0"
