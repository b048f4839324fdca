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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stitching.multitask.manifest import HeadManifest, monolithic_edges
from stitching.multitask.store import (
    ST_DTYPES,
    PackedTileStore,
    Run,
    evict_page_cache,
    read_file,
    safetensors_views,
)
from stitching.multitask.heads import Head
from stitching.multitask.tiles import TileGrid

_EMPTY = np.zeros(0, dtype=np.int64)


def differential_set(needed: Iterable[str], resident: Iterable[str]) -> frozenset[str]:
    """Digests a switch must read: needed and not resident."""
    return frozenset(needed) - frozenset(resident)


def modelled_load_ms(nbytes: int, bandwidth_gbps: float, per_read_overhead_ms: float = 0.0, reads: int = 0) -> float:
    """Load time predicted from a storage bandwidth in GB/s (1e9 bytes/s) and a per-read overhead."""
    if bandwidth_gbps <= 0:
        raise ValueError(f"bandwidth_gbps must be positive, got {bandwidth_gbps}")
    return nbytes / (bandwidth_gbps * 1e9) * 1e3 + per_read_overhead_ms * reads


@dataclass(frozen=True)
class LayerTiles:
    """One layer of a runnable task in block-sparse-row form: tile ``k`` sits at ``(rows[k], cols[k])``
    and its bytes are ``data[index[k]]`` (``data``: ``[m, t, t]``, an arena or a file's tile array).
    ``edges`` holds the uneven edge tiles of layers that tiles do not cut evenly, as ``(row, col, tile)``."""

    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    index: np.ndarray
    edges: tuple[tuple[int, int, np.ndarray], ...] = ()


class ActiveWeights:
    """The backbone a task runs on: per layer, which tile sits where and where its bytes are held.

    Installing a task only swaps these block-sparse-row tables: the tiles themselves stay where
    they were read (a :class:`TileCache` arena slot, or the buffer a monolithic file was read into),
    so a switch costs its I/O plus a few index operations per layer. :meth:`dense` assembles plain
    ``[out, fan_in]`` matrices (a copy), which the backbone runs on to measure accuracy.
    """

    def __init__(self, layer_grids: Mapping[str, TileGrid]) -> None:
        self.grids = dict(layer_grids)
        self.layers: dict[str, LayerTiles] = {}
        self.head: Head | None = None

    def install(self, layers: Mapping[str, LayerTiles], head: Head) -> None:
        self.layers = dict(layers)
        self.head = head

    def dense(self) -> dict[str, np.ndarray]:
        """Plain ``[out, in]`` weight matrices (copies); positions without a tile are zero."""
        out = {}
        for n, g in self.grids.items():
            t = g.tile_size
            blocks = np.zeros((g.rows, g.cols, t, t), dtype=np.float32)
            lt = self.layers.get(n)
            if lt is not None:
                blocks[lt.rows, lt.cols] = lt.data[lt.index]
                for r, c, tile in lt.edges:
                    blocks[r, c, : tile.shape[0], : tile.shape[1]] = tile
            out[n] = np.ascontiguousarray(blocks.transpose(0, 2, 1, 3).reshape(g.rows * t, g.cols * t)[: g.shape[0], : g.shape[1]])
        return out


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
        self.in_arena = np.array([e.shape == self.tile_shape and ST_DTYPES.get(e.dtype) == self.dtype for e in entries], dtype=bool)
        capacity = int(self.in_arena.sum()) if capacity_tiles is None else capacity_tiles
        self.arena = np.empty((max(capacity, 1), tile_size, tile_size), dtype=self.dtype)
        self.arena.fill(0.0)  # touch every page now, not during a timed switch
        self._arena_bytes = self.arena.reshape(-1).view(np.uint8).data
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

    def runs(self, ids: np.ndarray, max_gap_bytes: int = 0) -> list[Run]:
        """The byte runs a load of ``ids`` reads (ids are store positions)."""
        return self.store.runs_at(np.unique(self.missing(ids)), max_gap_bytes)

    def load(self, ids: np.ndarray, max_gap_bytes: int = 0) -> int:
        """Read the tiles of ``ids`` that are not held, straight into their slots; return tile bytes read."""
        return self.load_runs(self.runs(ids, max_gap_bytes))

    def load_runs(self, runs: Sequence[Run]) -> int:
        """Read ``runs`` (from :meth:`runs`) straight into their tiles' slots; return tile bytes read."""
        return self.store.read_runs(runs, self._claim)

    def _claim(self, run: Run) -> list[memoryview]:
        """Hold the tiles of ``run``: the buffers (arena slots, or new arrays) its bytes go to, in order."""
        views: list[memoryview] = []
        tile_bytes = self.arena[0].nbytes
        for i in run.positions.tolist():
            self.held[i] = True
            if self.in_arena[i]:
                if not self.free:
                    raise MemoryError(f"tile arena full ({len(self.arena)} slots)")
                slot = self.free.pop()
                self.slot_of[i] = slot
                views.append(self._arena_bytes[slot * tile_bytes : (slot + 1) * tile_bytes])
            else:
                e = self.store.entry(self.digest_of[i])
                arr = self.other[i] = np.empty(e.shape, dtype=ST_DTYPES[e.dtype])
                views.append(arr.reshape(-1).view(np.uint8).data)
        return views

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

    def runnable(self, task: HeadTiles, layer_grids: Mapping[str, TileGrid]) -> dict[str, LayerTiles]:
        """The block-sparse-row tables of ``task`` over the tiles held here (all must be held)."""
        if not self.held[task.ids].all():
            raise KeyError(f"{int((~self.held[task.ids]).sum())} tiles of the task are not held")
        out: dict[str, LayerTiles] = {}
        for layer in layer_grids:
            rows, cols, ids = task.positions.get(layer, (_EMPTY, _EMPTY, _EMPTY))
            edges = tuple((r, c, self.other[i]) for r, c, i in task.edges.get(layer, ()))
            out[layer] = LayerTiles(rows, cols, self.arena, self.slot_of[ids], edges)
        return out

    def head(self, task: HeadTiles) -> Head:
        return tuple(self.array(i) for i in task.head)


@dataclass(frozen=True)
class HeadTiles:
    """One task's manifest in cache ids, split once so a switch only looks up arena slots.

    Per layer: ``(rows, cols, ids)`` of its arena tiles and ``(row, col, id)`` of its other
    (uneven edge) tiles; the ids of its head; all its ids, sorted.
    """

    positions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    edges: dict[str, tuple[tuple[int, int, int], ...]]
    head: tuple[int, ...]
    ids: np.ndarray


def head_tiles(manifest: HeadManifest, cache: TileCache) -> HeadTiles:
    by_layer: dict[str, list[tuple[int, int, int]]] = {}
    edges: dict[str, list[tuple[int, int, int]]] = {}
    for key, digest in sorted(manifest.tiles.items()):
        i = cache.id_of[digest]
        (by_layer if cache.in_arena[i] else edges).setdefault(key.layer, []).append((key.row, key.col, i))
    positions = {
        n: (np.array([r for r, _, _ in t], np.int64), np.array([c for _, c, _ in t], np.int64), np.array([i for _, _, i in t], np.int64))
        for n, t in by_layer.items()
    }
    head = tuple(cache.id_of[d] for d in manifest.head)
    return HeadTiles(positions, {n: tuple(e) for n, e in edges.items()}, head, np.unique(cache.ids(manifest.digests())))


def monolithic_runnable(tensors: Mapping[str, np.ndarray], layer_grids: Mapping[str, TileGrid]) -> dict[str, LayerTiles]:
    """The block-sparse-row tables of a whole per-task model file, over the buffer it was read into."""
    out: dict[str, LayerTiles] = {}
    edges: dict[str, list[tuple[int, int, np.ndarray]]] = {}
    for key, tile in sorted(monolithic_edges(tensors).items()):
        edges.setdefault(key.layer, []).append((key.row, key.col, tile))
    for layer, g in layer_grids.items():
        data = tensors.get(f"{layer}.tiles")
        edge = tuple(edges.get(layer, ()))
        if data is None:
            out[layer] = LayerTiles(_EMPTY, _EMPTY, np.zeros((0, g.tile_size, g.tile_size), np.float32), _EMPTY, edge)
            continue
        index = tensors[f"{layer}.index"].astype(np.int64)
        out[layer] = LayerTiles(index[:, 0], index[:, 1], data, np.arange(len(data)), edge)
    return out


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


@dataclass(frozen=True)
class ReadCurve:
    """Median time of one cold read request by its size (source: measured): the storage's response
    at the sizes a switch reads, latency and size-dependent throughput together."""

    sizes: tuple[int, ...]
    ms: tuple[float, ...]
    samples: int
    source: str = "measured"

    def read_ms(self, nbytes: int) -> float:
        """One request of ``nbytes``: interpolated between measured sizes; past the largest, its slope goes on."""
        if nbytes <= 0:
            return 0.0
        if nbytes <= self.sizes[-1] or len(self.sizes) < 2:
            return float(np.interp(nbytes, self.sizes, self.ms))
        slope = (self.ms[-1] - self.ms[-2]) / (self.sizes[-1] - self.sizes[-2])
        return self.ms[-1] + slope * (nbytes - self.sizes[-1])


# Request sizes the curve is measured at: from one page to a whole task's model (about 1 MB on
# digits_resnet, 16 MB on digits_resnet18); a size larger than every file is left out.
READ_CURVE_SIZES: tuple[int, ...] = (4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


def measure_read_curve(
    paths: Iterable[Path], sizes: Sequence[int] = READ_CURVE_SIZES, samples: int = 31, seed: int = 0
) -> ReadCurve:
    """Per size, the median over ``samples`` of: evict the page cache, then one request of that size at
    a random page-aligned offset, read as the pool reads a run (``WILLNEED``, then one ``preadv``).
    Sizes larger than every file are left out. 31 samples: with 15, two curves measured back to back
    here modelled the same tight-budget switches at 2.63 and 2.17 ms; the curve costs about 1 s at 31."""
    paths = list(paths)
    largest = max(p.stat().st_size for p in paths)
    usable = [s for s in sorted(sizes) if s <= largest]
    if not usable:
        raise ValueError(f"every file is smaller than {min(sizes)} bytes")
    rng = np.random.default_rng(seed)
    medians: list[float] = []
    for size in usable:
        fits = [p for p in paths if p.stat().st_size >= size]
        buf = bytearray(size)
        times: list[float] = []
        for i in range(samples):
            path = fits[i % len(fits)]
            evict_page_cache([path])
            offset = int(rng.integers(0, path.stat().st_size - size + 1)) // 4096 * 4096
            fd = os.open(path, os.O_RDONLY)
            try:
                start = time.perf_counter()
                os.posix_fadvise(fd, offset, size, os.POSIX_FADV_WILLNEED)
                os.preadv(fd, [buf], offset)
                times.append(time.perf_counter() - start)
            finally:
                os.close(fd)
        medians.append(float(np.median(times)) * 1e3)
    return ReadCurve(tuple(usable), tuple(medians), samples)
