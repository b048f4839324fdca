"""The small protocol every processor backend implements, and what compiling returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from backends.block import BlockSpec
from backends.cache import CompileCache
from backends.identity import TUNING_DIR
from backends.npu import OffloadPlan
from backends.processor import ProcessorSpec

# Runs a compiled block once on torch inputs and returns its outputs as torch tensors.
Runner = Callable[..., tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class CompileOptions:
    """Where compiled artifacts and tuning records live, and how hard to tune."""

    cache: CompileCache
    tuning_db: Path | None = None
    tune_trials: int = 0
    # Link cross-target objects into a shared object with zig (a cold zig cache builds libc: ~1 min).
    cross_link: bool = True


def cache_options(compiled: Path, tune_trials: int = 0, cross_link: bool = True) -> CompileOptions:
    """The compile cache at ``compiled`` and the tuning database beside it (``../tuning``), so the
    profiler and the runtime compile the same code: with the database's records once ``tune``
    has filled it, with the rules alone before."""
    return CompileOptions(cache=CompileCache(compiled), tuning_db=compiled.parent / TUNING_DIR,
                          tune_trials=tune_trials, cross_link=cross_link)


@dataclass(frozen=True)
class CompiledBlock:
    """A block compiled for one processor; ``artifact`` is the cached file TVM exported."""

    block: str
    digest: str
    processor: str
    target: str
    artifact: Path | None
    artifact_format: str  # "so" (loadable), "so-cross" (linked for another arch), "tar" (objects/sources), "none"
    runnable: bool
    cache_hit: bool
    compile_s: float
    tuning_state: str
    offload: OffloadPlan | None = None
    note: str = ""


class Backend(Protocol):
    """Compile a block for a processor, and run it where the processor is present."""

    kind: str

    def compile(self, block: BlockSpec, processor: ProcessorSpec, options: CompileOptions) -> CompiledBlock: ...

    def present(self, processor: ProcessorSpec) -> bool: ...

    def load(self, compiled: CompiledBlock, processor: ProcessorSpec) -> Runner: ...
