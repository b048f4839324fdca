"""Resident blocks: load from the pool on demand, compile through the backends, evict LRU, stay in budget.

A block's weights are resident once per digest, whichever processors run it;
each processor that runs it gets its own runner (a TVM executable loaded from
the compile cache, or the torch module itself for ``executor: torch``). The
budget counts the blocks' weight memory (``memory_mb`` per digest, the numbers
the plan was made with) of resident blocks and of blocks being loaded. Blocks
that a worker is running are pinned and never evicted; which idle blocks go is
the rule the simulator uses too (:func:`sparseloom.core.eviction.victims`): least
recently used first, blocks no dispatched request still needs before those it
does (the engine says which with :meth:`Residency.want` / :meth:`Residency.unwant`),
and the plan's resident set last within each.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from backends.base import CompileOptions, Runner
from backends.block import BlockSpec
from backends.processor import ProcessorSpec
from backends.tvm_backends import backend_for, runner_for
from sparseloom.core.decisions import Decisions
from sparseloom.core.dispatch import prefetch
from sparseloom.core.eviction import victims
from stitching.pool import Pool


class BlockTooLarge(ValueError):
    """A block needs more memory than the whole budget."""


class MemoryWaitTimeout(RuntimeError):
    """No room for a block within the wait limit: every resident block stayed pinned."""


@dataclass
class _Entry:
    digest: str
    memory_mb: float
    loading: bool = True
    pins: int = 0
    spec: BlockSpec | None = None
    runners: dict[str, Runner] = field(default_factory=dict)


@dataclass(frozen=True)
class ResidencyCounters:
    """Load, eviction and memory figures since the runtime started (all measured)."""

    resident_mb: float
    peak_mb: float
    resident_blocks: int
    loads: int
    load_ms: float
    compile_s: float
    evictions: int


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown tensor dtype {name!r} in the pool manifest")  # noqa: TRY004 - bad data, not a bad type
    return dt


class Residency:
    """The set of resident blocks of one runtime, kept within ``budget_mb``.

    ``memory_mb`` gives each digest's weight memory; ``on_memory(now_ms, delta_mb)``
    is called on every change so the caller can integrate memory over time. ``decisions``, when
    given, records every load (as its memory is reserved) and eviction, in order.
    """

    def __init__(
        self,
        pool: Pool,
        processors: Mapping[str, ProcessorSpec],
        budget_mb: float,
        memory_mb: Mapping[str, float],
        options: CompileOptions,
        clock_ms: Callable[[], float],
        on_memory: Callable[[float, float], None] = lambda t, d: None,
        wait_s: float = 30.0,
        decisions: Decisions | None = None,
    ) -> None:
        self._pool = pool
        self._procs = dict(processors)
        self._budget = budget_mb
        self._mb = dict(memory_mb)
        self._options = options
        self._clock = clock_ms
        self._on_memory = on_memory
        self._wait_s = wait_s
        self._blocks = {b.digest: b for b in pool.blocks()}
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._cond = threading.Condition()
        self._protected: frozenset[str] = frozenset()
        # Per digest: blocks of dispatched requests still to run (their own block included).
        self._wanted: Counter[str] = Counter()
        self._used_mb = 0.0
        self._peak_mb = 0.0
        self._loads = 0
        self._load_ms = 0.0
        self._compile_s = 0.0
        self._evictions = 0
        self._decisions = decisions
        # One loader, as the simulator's one storage channel: prefetches load in the order they start.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseloom-prefetch")

    @property
    def budget_mb(self) -> float:
        return self._budget

    def block_mb(self, digest: str) -> float:
        if digest in self._mb:
            return self._mb[digest]
        return self._blocks[digest].param_bytes / 2**20

    def is_resident(self, digest: str) -> bool:
        e = self._entries.get(digest)
        return e is not None and not e.loading

    def counters(self) -> ResidencyCounters:
        with self._cond:
            return ResidencyCounters(
                resident_mb=self._used_mb,
                peak_mb=self._peak_mb,
                resident_blocks=sum(1 for e in self._entries.values() if not e.loading),
                loads=self._loads,
                load_ms=self._load_ms,
                compile_s=self._compile_s,
                evictions=self._evictions,
            )

    def resident(self) -> frozenset[str]:
        with self._cond:
            return frozenset(d for d, e in self._entries.items() if not e.loading)

    # -- memory bookkeeping (callers hold the lock)

    def _change(self, delta_mb: float) -> None:
        self._used_mb += delta_mb
        self._peak_mb = max(self._peak_mb, self._used_mb)
        self._on_memory(self._clock(), delta_mb)

    def want(self, digests: Iterable[str]) -> None:
        """A request was dispatched: its blocks are needed until each has run (or it ends early)."""
        with self._cond:
            self._wanted.update(digests)

    def unwant(self, digests: Iterable[str]) -> None:
        """Blocks of a dispatched request that ran, or that it will no longer run."""
        with self._cond:
            for d in digests:
                left = self._wanted[d] - 1
                if left > 0:
                    self._wanted[d] = left
                else:
                    self._wanted.pop(d, None)

    def _make_room(self, need_mb: float, demand: bool) -> bool:
        free = self._budget - self._used_mb
        if need_mb <= free + 1e-9:
            return True
        idle = [d for d, e in self._entries.items() if e.pins == 0 and not e.loading]
        chosen = victims(idle, need_mb, free, {d: self._entries[d].memory_mb for d in idle}, self._wanted,
                         self._protected, demand)
        if chosen is None:
            return False
        for d in chosen:
            e = self._entries.pop(d)
            self._evictions += 1
            self._change(-e.memory_mb)
            if self._decisions is not None:
                self._decisions.evictions.append(d)
        return True

    # -- the hot path

    def acquire(self, digest: str, processor: str) -> Runner:
        """Pin ``digest`` and return its runner on ``processor``, loading and compiling it when needed
        (a demand load, which may evict blocks dispatched requests need).

        Waits (up to the wait limit) while the budget is full of pinned blocks, or while a prefetch
        of the block is under way.
        """
        mb = self._fits(digest)
        deadline = time.monotonic() + self._wait_s
        with self._cond:
            while True:
                e = self._entries.get(digest)
                if e is not None and not e.loading:
                    e.pins += 1
                    self._entries.move_to_end(digest)
                    runner = e.runners.get(processor)
                    if runner is not None:
                        return runner
                    break
                if e is None and self._make_room(mb, demand=True):
                    e = self._reserve(digest, mb, pins=1)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MemoryWaitTimeout(
                        f"no room for block {digest[:12]} ({mb:.2f} MB) within {self._wait_s:g} s: "
                        f"{self._used_mb:.2f} of {self._budget:.2f} MB held by running blocks"
                    )
                self._cond.wait(timeout=min(left, 0.05))
        # Loading and compiling happen outside the lock; the entry is reserved and pinned.
        return self._fill(e, processor, pinned=True)

    def prefetch(self, digests: Sequence[str], processors: Sequence[str]) -> None:
        """A request was dispatched: start loading its blocks that are not resident, in route order, on
        the loader thread, by the rule the simulator uses (:func:`sparseloom.core.dispatch.prefetch`):
        memory is reserved now, without evicting a block a dispatched request needs, and the first
        block that does not fit ends the prefetch (the rest load on demand)."""
        where = dict(zip(digests, processors))  # the first processor that runs each block compiles it
        with self._cond:
            started: list[_Entry] = []

            def start(d: str) -> bool:
                e = self._reserve_quietly(d)
                if e is not None:
                    started.append(e)
                return e is not None

            prefetch(dict.fromkeys(digests), lambda d: d not in self._entries, start)
        for e in started:
            self._loader.submit(self._fill_quietly, e, where[e.digest])

    def _within(self, mb: float) -> bool:
        return mb <= self._budget + 1e-9  # slack for float sums of block sizes

    def _fits(self, digest: str) -> float:
        mb = self.block_mb(digest)
        if not self._within(mb):
            raise BlockTooLarge(
                f"block {digest[:12]} needs {mb:.2f} MB, more than the memory budget ({self._budget:.2f} MB)"
            )
        return mb

    def _reserve(self, digest: str, mb: float, pins: int) -> _Entry:
        """A new entry, loading, its memory counted (callers hold the lock and have made room)."""
        e = _Entry(digest, mb, pins=pins)
        self._entries[digest] = e
        self._change(mb)
        if self._decisions is not None:
            self._decisions.loads.append(digest)
        return e

    def _reserve_quietly(self, digest: str) -> _Entry | None:
        """Reserve ``digest`` for a load no request waits on (a prefetch or a plan's pre-load), or None
        when it is resident already or does not fit without evicting a block a dispatched request needs
        (callers hold the lock)."""
        mb = self.block_mb(digest)
        if digest in self._entries or not self._within(mb) or not self._make_room(mb, demand=False):
            return None
        return self._reserve(digest, mb, pins=0)

    def _fill(self, e: _Entry, processor: str, pinned: bool) -> Runner:
        """Load and compile the reserved entry ``e`` for ``processor`` (outside the lock); on failure
        the reservation is undone and the error raised."""
        try:
            runner = self._runner(e, processor)
        except BaseException:
            with self._cond:
                if pinned:
                    e.pins -= 1
                if e.loading:
                    self._entries.pop(e.digest, None)
                    self._change(-e.memory_mb)
                self._cond.notify_all()
            raise
        with self._cond:
            e.runners[processor] = runner
            e.loading = False
            self._cond.notify_all()
        return runner

    def _fill_quietly(self, e: _Entry, processor: str) -> None:
        """A prefetch's load: a failure undoes it, and the block loads on demand (which reports the error)."""
        try:
            self._fill(e, processor, pinned=False)
        except Exception:  # noqa: BLE001, S110 - the demand load that follows raises it to the request
            pass

    def close(self) -> None:
        """Stop the loader thread once the prefetches queued so far are done."""
        self._loader.shutdown(wait=True)

    def release(self, digest: str) -> None:
        with self._cond:
            e = self._entries.get(digest)
            if e is not None:
                e.pins -= 1
            self._cond.notify_all()

    def _runner(self, e: _Entry, processor: str) -> Runner:
        proc = self._procs[processor]
        t0 = time.perf_counter()
        if e.spec is None:
            e.spec = self.block_spec(e.digest)
            with self._cond:
                self._loads += 1
                self._load_ms += (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        compiled = backend_for(proc).compile(e.spec, proc, self._options)
        runner = runner_for(e.spec, proc, compiled)
        with self._cond:
            self._compile_s += time.perf_counter() - t1
        return runner

    def block_spec(self, digest: str) -> BlockSpec:
        """The block rebuilt from the pool (safetensors), with zero example inputs of its interface."""
        block = self._blocks.get(digest)
        if block is None:
            raise ValueError(f"no block with digest {digest[:12]} in the pool {self._pool.root}")
        module = self._pool.load_module(digest)
        inputs = tuple(torch.zeros(s.shape, dtype=_dtype(s.dtype)) for s in block.inputs)
        return BlockSpec(
            name=f"{block.model}/{block.variant}/{block.position}",
            module=module,
            example_inputs=inputs,
            digest=digest,
            pattern=block.pattern,
            level=block.level,
            dtype="int8" if block.pattern == "int8" else "fp32",
            flops=float(block.flops),
            weight_bytes=int(block.param_bytes),
        )

    # -- plans

    def apply_plan(self, resident: Collection[str], loads: Sequence[tuple[str, str]]) -> None:
        """Protect the plan's ``resident`` set (when it fits as a whole), then make ``loads`` resident
        ((digest, processor to compile for), :func:`sparseloom.core.residency.plan_loads`) as room
        allows; a block that does not fit without evicting a pinned or protected block is skipped."""
        with self._cond:
            fits = self._within(sum(self.block_mb(d) for d in set(resident)))
            self._protected = frozenset(resident) if fits else frozenset()
        for d, proc in loads:
            with self._cond:
                e = self._reserve_quietly(d)
            if e is not None:
                self._fill(e, proc, pinned=False)

    def warm(self, digest: str, processor: str) -> float:
        """Compile ``digest`` for ``processor`` into the compile cache without making it resident; seconds spent."""
        proc = self._procs[processor]
        t0 = time.perf_counter()
        backend_for(proc).compile(self.block_spec(digest), proc, self._options)
        return time.perf_counter() - t0
