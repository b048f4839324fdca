"""Differential loading: bring a task's tiles into memory, reading only what is not resident.

:class:`ActiveWeights` is the runnable copy of the backbone (dense buffers). A switch places the
next task's tiles and zeroes the tiles the previous task had and the next lacks, so the work done
is proportional to what changes, for every method alike. :class:`TileCache` is the set of tiles
held in memory (the active task's plus any pre-loaded ones); :func:`differential_set` is what a
switch must read. Timings are wall-clock (``source: measured``); :func:`modelled_load_ms` gives
the time a storage bandwidth parameter predicts (``source: modelled``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stitching.multitask.store import TileStore, evict_page_cache
from stitching.multitask.tiles import TileGrid, TileKey


def differential_set(needed: Iterable[str], resident: Iterable[str]) -> frozenset[str]:
    """Digests a switch must read: needed and not resident."""
    return frozenset(needed) - frozenset(resident)


def modelled_load_ms(nbytes: int, bandwidth_gbps: float, per_read_overhead_ms: float = 0.0, reads: int = 0) -> float:
    """Load time predicted from a storage bandwidth in GB/s (1e9 bytes/s) and a per-read overhead."""
    if bandwidth_gbps <= 0:
        raise ValueError(f"bandwidth_gbps must be positive, got {bandwidth_gbps}")
    return nbytes / (bandwidth_gbps * 1e9) * 1e3 + per_read_overhead_ms * reads


class ActiveWeights:
    """Dense backbone buffers plus which tile sits at each position (the model a task runs on)."""

    def __init__(self, layer_grids: Mapping[str, TileGrid], dtype: type = np.float32) -> None:
        self.grids = dict(layer_grids)
        self.weights: dict[str, np.ndarray] = {n: np.zeros(g.shape, dtype=dtype) for n, g in self.grids.items()}
        self.placed: dict[TileKey, str] = {}
        self.head: tuple[np.ndarray, np.ndarray] | None = None

    def place(
        self,
        tiles: Mapping[TileKey, str],
        data: Mapping[str, np.ndarray],
        head: tuple[np.ndarray, np.ndarray],
    ) -> int:
        """Make the buffers hold exactly ``tiles`` (digest by position, bytes in ``data``); return tiles written."""
        for key in [k for k in self.placed if k not in tiles]:
            self.weights[key.layer][self.grids[key.layer].slices(key)] = 0.0
            del self.placed[key]
        written = 0
        for key, digest in tiles.items():
            if self.placed.get(key) != digest:
                self.weights[key.layer][self.grids[key.layer].slices(key)] = data[digest]
                self.placed[key] = digest
                written += 1
        self.head = head
        return written


class TileCache:
    """Tiles held in memory, by digest."""

    def __init__(self) -> None:
        self.data: dict[str, np.ndarray] = {}

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.data.values())

    def load(self, store: TileStore, digests: Iterable[str]) -> int:
        """Read the given digests that are not held; return bytes read."""
        missing = differential_set(digests, self.data)
        got = store.read(missing)
        self.data.update(got)
        return sum(a.nbytes for a in got.values())

    def keep_only(self, digests: Iterable[str]) -> None:
        keep = frozenset(digests)
        for d in [d for d in self.data if d not in keep]:
            del self.data[d]


def read_file(path: Path) -> bytes:
    """Whole file with plain reads (no mmap), so the bytes really come through the page cache."""
    with open(path, "rb", buffering=0) as handle:
        return handle.read()


@dataclass(frozen=True)
class ReadBandwidth:
    """Sequential cold-read bandwidth of some files (source: measured)."""

    bandwidth_gbps: float
    nbytes: int
    seconds: float
    repeats: int
    source: str = "measured"


@dataclass(frozen=True)
class ReadLatency:
    """Median time of one small cold read (source: measured): the fixed cost of each read request."""

    latency_ms: float
    read_bytes: int
    samples: int
    source: str = "measured"


def measure_read_latency(paths: Iterable[Path], samples: int = 30, read_bytes: int = 4096, seed: int = 0) -> ReadLatency:
    """Median over ``samples`` of: evict the page cache, ``pread`` ``read_bytes`` at a random offset."""
    paths = [p for p in paths if p.stat().st_size > read_bytes]
    if not paths:
        raise ValueError(f"need a file larger than {read_bytes} bytes")
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for i in range(samples):
        path = paths[i % len(paths)]
        evict_page_cache([path])
        offset = int(rng.integers(0, path.stat().st_size - read_bytes)) // 4096 * 4096
        fd = os.open(path, os.O_RDONLY)
        try:
            start = time.perf_counter()
            os.pread(fd, read_bytes, offset)
            times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    return ReadLatency(float(np.median(times)) * 1e3, read_bytes, samples)


def measure_read_bandwidth(paths: Iterable[Path], repeats: int = 5, chunk_bytes: int = 8 << 20) -> ReadBandwidth:
    """Median over ``repeats`` of: evict the page cache of ``paths``, then read them whole."""
    paths = list(paths)
    times: list[float] = []
    total = 0
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    for _ in range(repeats):
        evict_page_cache(paths)
        total = 0
        start = time.perf_counter()
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                while n := os.readv(fd, [view]):
                    total += n
            finally:
                os.close(fd)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return ReadBandwidth(total / seconds / 1e9, total, seconds, repeats)
