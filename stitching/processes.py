"""Worker process pools whose workers die with the process that started them.

A ``ProcessPoolExecutor`` worker that outlives a SIGKILLed parent waits forever: its siblings
hold the write end of the queue it reads, so the queue never closes. On Linux each worker asks
the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and exits at once if
the parent is already gone. Elsewhere the pool is a plain one. It lives in the lowest layer so
the profiler and the simulator share it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_pool(workers: int, context: BaseContext | None = None) -> ProcessPoolExecutor:
    """A process pool of ``workers`` whose workers are killed when this process dies."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=context or multiprocessing.get_context(),
                               initializer=_die_with, initargs=(os.getpid(),))
