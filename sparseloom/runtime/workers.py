"""One worker thread per processor: a queue of block steps, run one at a time.

The queue is served in the order of the keys the runtime gives (:func:`sparseloom.core.dispatch.queue_key`:
earliest deadline first, ties by arrival, or first come, first served, as the policy declares), exactly
as the simulator serves its processors.
The worker knows nothing about plans or policies: it pops a job, calls the
runtime's ``execute`` on it, and keeps the two figures a policy reads
through the queue view: when the running block is expected to finish, and the
expected work waiting in its queue (the plan's expected latencies, :mod:`sparseloom.core.expected`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")


class WorkerDied(RuntimeError):
    """A processor's worker thread died; its requests fail with this instead of waiting forever."""


class Worker(threading.Thread, Generic[Job]):
    """A processor's queue and the thread that drains it."""

    def __init__(
        self,
        name: str,
        index: int,
        execute: Callable[[Worker[Job], Job], None],
        on_death: Callable[[Worker[Job], BaseException, list[Job]], None] | None = None,
        on_idle: Callable[[Worker[Job]], None] | None = None,
    ) -> None:
        super().__init__(name=f"sparseloom-worker-{name}", daemon=True)
        self.processor = name
        self.index = index
        self._execute = execute
        # A heap of (key, joining order, job, expected_ms).
        self._queue: list[tuple[tuple[float, int], int, Job, float]] = []
        self._joined = itertools.count()
        self._busy = False
        self._cond = threading.Condition()
        self._stopping = False
        self._on_death = on_death
        self._on_idle = on_idle
        self._running: Job | None = None
        # Set when the thread died of an error ``execute`` let through: later puts fail at once.
        self.error: BaseException | None = None
        self.queued_ms = 0.0
        self.busy_until_ms = 0.0
        # When its last block ended and whose task it was (-1: none yet): a request's first block
        # here is warm after the same task's block, and woke the worker after the gap since.
        self.idle_since_ms = 0.0
        self.last_task = -1

    def put(self, job: Job, expected_ms: float, key: tuple[float, int]) -> None:
        """Queue ``job``, served in ``key`` order (smallest first)."""
        with self._cond:
            if self.error is not None:
                raise WorkerDied(f"the {self.processor} worker died ({self.error!r}); it takes no more requests")
            heapq.heappush(self._queue, (key, next(self._joined), job, expected_ms))
            self.queued_ms += expected_ms
            self._cond.notify()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Running nothing and nothing queued."""
        with self._cond:
            return not self._busy and not self._queue and self.error is None

    def started(self, now_ms: float, expected_ms: float) -> None:
        self.busy_until_ms = now_ms + expected_ms

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run(self) -> None:
        try:
            self._drain()
        except BaseException as err:  # noqa: BLE001 - reported to the owner, who fails what was queued
            with self._cond:
                self.error = err
                pending = [self._running] if self._running is not None else []
                pending += [entry[2] for entry in self._queue]
                self._queue.clear()
                self.queued_ms = 0.0
                self._busy = False
            if self._on_death is not None:
                self._on_death(self, err, pending)

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                _, _, job, expected = heapq.heappop(self._queue)
                self.queued_ms = max(0.0, self.queued_ms - expected) if self._queue else 0.0
                self._busy = True
                self._running = job
            self._execute(self, job)
            with self._cond:
                self._busy = False
                self._running = None
            if self._on_idle is not None and not self._queue:
                self._on_idle(self)
