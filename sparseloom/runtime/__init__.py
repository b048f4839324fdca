"""The real runtime: a plan run on the host's processors, with live statistics.

- ``engine``: :class:`Runtime` (workers per processor, policy decisions, admission control, SLO changes);
- ``residency``: resident blocks within the memory budget (pool loads, compile cache, LRU eviction);
- ``workers``: one worker thread per processor, its queue served earliest deadline first (or FIFO);
- ``stats``: live statistics (:class:`RuntimeStats`), computed with the simulator's metric definitions;
- ``host``: a problem restricted to the processors present here;
- ``replay``: arrivals replayed in real time.
"""

from sparseloom.runtime.engine import Rejected, Runtime
from sparseloom.runtime.host import processors_present, restrict
from sparseloom.runtime.replay import Replayed, replay
from sparseloom.runtime.residency import BlockTooLarge, MemoryWaitTimeout, Residency
from sparseloom.runtime.stats import RuntimeStats, TaskStats
from sparseloom.runtime.workers import WorkerDied

__all__ = [
    "BlockTooLarge",
    "MemoryWaitTimeout",
    "Rejected",
    "Replayed",
    "Residency",
    "Runtime",
    "RuntimeStats",
    "TaskStats",
    "WorkerDied",
    "processors_present",
    "replay",
    "restrict",
]
