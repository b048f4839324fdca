"""Differential loading: bring a task's tiles into memory, reading only what is not resident.

:class:`TileCache` is the set of tiles held in memory (the active task's plus any pre-loaded ones).
Full ``t x t`` tiles live in one pre-touched arena (``[slots, t, t]``), so a run of adjacent tiles
in the pool is read by one ``preadv`` straight into their slots, with no copy of ours.
:class:`ActiveWeights` is the runnable copy of the backbone (dense buffers). A switch places the
next task's tiles and zeroes the tiles the previous task had and the next lacks, one vectorised
copy per layer, so the work done is proportional to what changes, for every method alike.
:func:`differential_set` is what a switch must read. Timings are wall-clock (``source:
measured``); :func:`modelled_load_ms` gives the time a storage bandwidth predicts (``source: modelled``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from stitching.multitask.manifest import TaskManifest
from stitching.multitask.store import PackedTileStore, PackEntry, evict_page_cache, safetensors_views
from stitching.multitask.tiles import TileGrid

_NP_OF_ST: dict[str, np.dtype] = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "F64": np.dtype(np.float64)}


def differential_set(needed: Iterable[str], resident: Iterable[str]) -> frozenset[str]:
    """Digests a switch must read: needed and not resident."""
    return frozenset(needed) - frozenset(resident)


def modelled_load_ms(nbytes: int, bandwidth_gbps: float, per_read_overhead_ms: float = 0.0, reads: int = 0) -> float:
    """Load time predicted from a storage bandwidth in GB/s (1e9 bytes/s) and a per-read overhead."""
    if bandwidth_gbps <= 0:
        raise ValueError(f"bandwidth_gbps must be positive, got {bandwidth_gbps}")
    return nbytes / (bandwidth_gbps * 1e9) * 1e3 + per_read_overhead_ms * reads


class TileSource(Protocol):
    """Where :meth:`ActiveWeights.install` takes tile bytes from, by integer tile id."""

    def tiles(self, layer: str, ids: np.ndarray) -> np.ndarray:
        """Full tiles ``[len(ids), t, t]``."""
        ...

    def tile(self, layer: str, tile_id: int) -> np.ndarray: ...


class ActiveWeights:
    """Dense backbone buffers plus the id of the tile at each position (-1: empty, zeros)."""

    def __init__(self, layer_grids: Mapping[str, TileGrid], dtype: type = np.float32) -> None:
        self.grids = dict(layer_grids)
        self.weights: dict[str, np.ndarray] = {n: np.zeros(g.shape, dtype=dtype) for n, g in self.grids.items()}
        # [rows, t, cols, t] views: tile (r, c) is blocks[r, :, c, :]; only where tiles cut the layer evenly.
        self._blocks: dict[str, np.ndarray | None] = {
            n: (
                self.weights[n].reshape(g.rows, g.tile_size, g.cols, g.tile_size)
                if g.shape[0] % g.tile_size == 0 and g.shape[1] % g.tile_size == 0
                else None
            )
            for n, g in self.grids.items()
        }
        self.placed: dict[str, np.ndarray] = {n: np.full((g.rows, g.cols), -1, dtype=np.int64) for n, g in self.grids.items()}
        self.head: tuple[np.ndarray, np.ndarray] | None = None

    def install(self, ids: Mapping[str, np.ndarray], source: TileSource, head: tuple[np.ndarray, np.ndarray]) -> int:
        """Make the buffers hold the tiles ``ids`` names (``[rows, cols]`` per layer); return tiles written."""
        written = 0
        for layer, new in ids.items():
            old = self.placed[layer]
            gone_r, gone_c = np.nonzero((old >= 0) & (new < 0))
            put_r, put_c = np.nonzero((new >= 0) & (new != old))
            blocks = self._blocks[layer]
            if blocks is not None:
                blocks[gone_r, :, gone_c, :] = 0.0
                if len(put_r):
                    blocks[put_r, :, put_c, :] = source.tiles(layer, new[put_r, put_c])
            else:  # uneven edge tiles: one slice at a time
                grid, w = self.grids[layer], self.weights[layer]
                for r, c in zip(gone_r.tolist(), gone_c.tolist(), strict=True):
                    w[grid.slices_at(r, c)] = 0.0
                for r, c in zip(put_r.tolist(), put_c.tolist(), strict=True):
                    w[grid.slices_at(r, c)] = source.tile(layer, int(new[r, c]))
            self.placed[layer] = new
            written += len(put_r)
        self.head = head
        return written


class TileCache:
    """Tiles held in memory, addressed by their id in ``store`` (:meth:`PackedTileStore.digests` order)."""

    def __init__(self, store: PackedTileStore, tile_size: int, dtype: type = np.float32, capacity_tiles: int | None = None) -> None:
        self.store = store
        self.digest_of: list[str] = store.digests()
        self.id_of: dict[str, int] = {d: i for i, d in enumerate(self.digest_of)}
        entries = [store.entry(d) for d in self.digest_of]
        self.nbytes_of = np.array([e.nbytes for e in entries], dtype=np.int64)
        self.tile_shape = (tile_size, tile_size)
        self.dtype = np.dtype(dtype)
        # Tiles of the arena's shape and dtype take an arena slot; others (edge tiles, heads) an array each.
        self.in_arena = np.array([e.shape == self.tile_shape and _NP_OF_ST.get(e.dtype) == self.dtype for e in entries], dtype=bool)
        capacity = int(self.in_arena.sum()) if capacity_tiles is None else capacity_tiles
        self.arena = np.empty((max(capacity, 1), tile_size, tile_size), dtype=self.dtype)
        self.arena.fill(0.0)  # touch every page now, not during a timed switch
        self.free: list[int] = list(range(len(self.arena) - 1, -1, -1))
        self.slot_of = np.full(len(self.digest_of), -1, dtype=np.int64)
        self.other: dict[int, np.ndarray] = {}
        self.held = np.zeros(len(self.digest_of), dtype=bool)

    def ids(self, digests: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.id_of[d] for d in digests), dtype=np.int64)

    def digests(self) -> frozenset[str]:
        return frozenset(self.digest_of[i] for i in np.flatnonzero(self.held).tolist())

    def nbytes(self) -> int:
        return int(self.nbytes_of[self.held].sum())

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """The differential set, as ids: those of ``ids`` not held."""
        return ids[~self.held[ids]]

    def runs(self, ids: np.ndarray) -> list[tuple[str, int, int, list[str]]]:
        return self.store.runs(self.digest_of[i] for i in self.missing(ids).tolist())

    def load(self, ids: np.ndarray) -> int:
        """Read the tiles of ``ids`` that are not held (all runs announced, then read); return bytes read."""
        runs = self.runs(ids)
        self.store.prefetch(runs)
        return self.store.read_into(runs, self.buffer_for)

    def buffer_for(self, digest: str, entry: PackEntry) -> memoryview:
        i = self.id_of[digest]
        self.held[i] = True
        if self.in_arena[i]:
            if not self.free:
                raise MemoryError(f"tile arena full ({len(self.arena)} slots)")
            slot = self.free.pop()
            self.slot_of[i] = slot
            return self.arena[slot].reshape(-1).view(np.uint8).data
        arr = np.empty(entry.shape, dtype=_NP_OF_ST[entry.dtype])
        self.other[i] = arr
        return arr.reshape(-1).view(np.uint8).data

    def keep_only(self, ids: np.ndarray) -> None:
        keep = np.zeros(len(self.held), dtype=bool)
        keep[ids] = True
        for i in np.flatnonzero(self.held & ~keep).tolist():
            self.held[i] = False
            if self.slot_of[i] >= 0:
                self.free.append(int(self.slot_of[i]))
                self.slot_of[i] = -1
            else:
                del self.other[i]

    def array(self, tile_id: int) -> np.ndarray:
        if not self.held[tile_id]:
            raise KeyError(f"tile {self.digest_of[tile_id]} is not held")
        slot = int(self.slot_of[tile_id])
        return self.arena[slot] if slot >= 0 else self.other[tile_id]

    def tiles(self, layer: str, ids: np.ndarray) -> np.ndarray:
        slots = self.slot_of[ids]
        if (slots < 0).any():
            raise KeyError("a tile to install is not held in the arena")
        return self.arena[slots]

    def tile(self, layer: str, tile_id: int) -> np.ndarray:
        return self.array(tile_id)


@dataclass(frozen=True)
class TaskTiles:
    """One task's manifest in cache ids: the id at every position of every layer, its head, all its ids."""

    positions: dict[str, np.ndarray]
    head: tuple[int, int]
    ids: np.ndarray


def task_tiles(manifest: TaskManifest, layer_grids: Mapping[str, TileGrid], cache: TileCache) -> TaskTiles:
    positions = {n: np.full((g.rows, g.cols), -1, dtype=np.int64) for n, g in layer_grids.items()}
    for key, digest in manifest.tiles.items():
        positions[key.layer][key.row, key.col] = cache.id_of[digest]
    head = (cache.id_of[manifest.head[0]], cache.id_of[manifest.head[1]])
    return TaskTiles(positions, head, np.unique(cache.ids(manifest.digests())))


class MonolithicSource:
    """A whole per-task model file as a tile source: ``<layer>.tiles`` rows, ids offset by ``base``."""

    def __init__(self, tensors: Mapping[str, np.ndarray], base: int) -> None:
        self.tensors = tensors
        self.base = base

    def positions(self, grids: Mapping[str, TileGrid]) -> dict[str, np.ndarray]:
        """Tile id at every position of every layer (-1 where the model has no tile)."""
        out: dict[str, np.ndarray] = {}
        for layer, g in grids.items():
            ids = np.full((g.rows, g.cols), -1, dtype=np.int64)
            index = self.tensors.get(f"{layer}.index")
            if index is not None and len(index):
                ids[index[:, 0], index[:, 1]] = self.base + np.arange(len(index))
            out[layer] = ids
        return out

    def tiles(self, layer: str, ids: np.ndarray) -> np.ndarray:
        return self.tensors[f"{layer}.tiles"][ids - self.base]

    def tile(self, layer: str, tile_id: int) -> np.ndarray:
        return self.tensors[f"{layer}.tiles"][tile_id - self.base]

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        return self.tensors["head.weight"], self.tensors["head.bias"]


def read_file(path: Path) -> bytearray:
    """Whole file, announced with ``POSIX_FADV_WILLNEED`` then one ``preadv`` (the pool's read path)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
        buf = bytearray(size)
        got = os.preadv(fd, [buf], 0)
        if got != size:
            raise OSError(f"short read from {path}: {got} of {size} bytes")
        return buf
    finally:
        os.close(fd)


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file read with :func:`read_file`, as arrays over the bytes read (no second copy)."""
    return safetensors_views(read_file(path))


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
