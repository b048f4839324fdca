"""Tiles in the pool: packed into safetensors files, indexed in the pool's manifest.

A tile is addressed by its sha256 digest (see :mod:`tiles`). :class:`PackedTileStore` is the tile
granularity of the one content-addressed pool (:mod:`stitching.pool`): tiles are packed into
``ROOT/tiles/pack-NNNNN.safetensors`` (tensor name ``<seq>_<digest>``, so the file keeps put order)
and the pool's ``manifest.json`` records each pack's size and sha256 and each tile's ``[pack, byte
offset, byte length, dtype, shape]``, so ``stitching.pool.verify`` checks tiles and blocks alike. A
tile is still individually loadable: one ``pread`` of its byte range. Reading a set of tiles
coalesces adjacent ranges into one ``preadv`` per run that scatters straight into the caller's
buffers (no copy of ours), so tiles put in the order they are usually needed together are read
sequentially.

``read`` does real file I/O (no mmap, no cache of ours); ``evict_page_cache`` drops the OS page
cache of the store's files so the next read comes from storage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

from stitching.atomic import write_bytes
from stitching.pool import ST_DTYPES, TILES, TileIndex, file_sha256, read_tile_index, write_tile_index



_IOV_MAX = 1024  # buffers one preadv may take (Linux IOV_MAX)


def safetensors_entries(blob: bytes | bytearray | memoryview) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Tensors of a safetensors file from its first bytes: name -> (dtype, shape, begin, end), file offsets."""
    header_len = int.from_bytes(bytes(blob[:8]), "little")
    header = json.loads(bytes(blob[8 : 8 + header_len]))
    base = 8 + header_len
    return {
        name: (meta["dtype"], tuple(int(x) for x in meta["shape"]), base + meta["data_offsets"][0], base + meta["data_offsets"][1])
        for name, meta in header.items()
        if name != "__metadata__"
    }


def safetensors_views(blob: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """Arrays over the bytes of a whole safetensors file, without copying (safetensors' ``load`` copies)."""
    return {
        name: np.frombuffer(blob, dtype=ST_DTYPES[dtype], count=(end - begin) // ST_DTYPES[dtype].itemsize, offset=begin).reshape(shape)
        for name, (dtype, shape, begin, end) in safetensors_entries(blob).items()
    }


def evict_page_cache(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop cached pages of ``paths`` (clean pages go; files are fsynced on write)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


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


@dataclass(frozen=True)
class Run:
    """Adjacent tiles read with one request: ``nbytes`` bytes of ``pack`` from ``offset``; their positions."""

    pack: str
    offset: int
    nbytes: int
    positions: np.ndarray


@dataclass(frozen=True)
class _Layout:
    """The index in file order, as arrays (so runs are found without a loop over tiles)."""

    order: list[str]
    position: dict[str, int]
    packs: list[str]
    pack: np.ndarray
    offset: np.ndarray
    nbytes: np.ndarray


@dataclass(frozen=True)
class PackEntry:
    """Where one tile lives inside a pack file."""

    pack: str
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


class PackedTileStore:
    """The tiles of the pool at ``root``; ``flush`` writes pending tiles as a pack and records them."""

    def __init__(self, root: Path, max_pack_bytes: int = 64 << 20) -> None:
        self.root = Path(root)
        self.max_pack_bytes = max_pack_bytes
        self._pending: dict[str, np.ndarray] = {}
        self._cached_layout: _Layout | None = None
        index = read_tile_index(self.root)
        self._packs: dict[str, dict[str, int | str]] = dict(index.packs)
        self._index: dict[str, PackEntry] = {
            d: PackEntry(str(e[0]), int(e[1]), int(e[2]), str(e[3]), tuple(int(x) for x in e[4])) for d, e in index.entries.items()
        }

    def put(self, digest: str, tile: np.ndarray) -> None:
        if digest not in self._index and digest not in self._pending:
            self._pending[digest] = np.ascontiguousarray(tile)

    def has(self, digest: str) -> bool:
        return digest in self._index or digest in self._pending

    def get(self, digest: str) -> np.ndarray:
        if digest in self._pending:
            return self._pending[digest]
        return self.read([digest])[digest]

    def entry(self, digest: str) -> PackEntry:
        return self._index[digest]

    def flush(self) -> None:
        """Write pending tiles (in put order) into new pack files, then record them in the manifest
        (each atomically; a pack written before an interruption and never recorded is not served)."""
        if not self._pending:
            return
        on_disk = {p.name for p in (self.root / TILES).glob("pack-*.safetensors")}
        seq = len(on_disk | set(self._packs))
        batch: list[tuple[str, np.ndarray]] = []
        size = 0
        for digest, tile in self._pending.items():
            batch.append((digest, tile))
            size += tile.nbytes
            if size >= self.max_pack_bytes:
                self._write_pack(seq, batch)
                seq, batch, size = seq + 1, [], 0
        if batch:
            self._write_pack(seq, batch)
        self._pending.clear()
        write_tile_index(self.root, TileIndex(
            dict(self._packs), {d: [e.pack, e.offset, e.nbytes, e.dtype, list(e.shape)] for d, e in self._index.items()}
        ))

    def _write_pack(self, seq: int, batch: list[tuple[str, np.ndarray]]) -> None:
        name = f"pack-{seq:05d}.safetensors"
        blob = st_save({f"{i:08d}_{d}": t for i, (d, t) in enumerate(batch)})
        for tensor_name, (dtype, shape, begin, end) in safetensors_entries(blob).items():
            digest = tensor_name.split("_", 1)[1]
            self._index[digest] = PackEntry(name, begin, end - begin, dtype, shape)
        write_bytes(self.root / TILES / name, blob)
        self._packs[name] = {"bytes": len(blob), "sha256": file_sha256(blob)}

    def digests(self) -> list[str]:
        """Every stored digest in file order (pack, then offset); a digest's *position* is its index here."""
        return self._layout().order

    def positions(self, digests: Iterable[str]) -> np.ndarray:
        """Sorted, distinct positions of ``digests`` (see :meth:`digests`)."""
        pos = self._layout().position
        return np.unique(np.fromiter((pos[d] for d in digests), dtype=np.int64))

    def runs_at(self, positions: np.ndarray, max_gap_bytes: int = 0) -> list[Run]:
        """Byte runs that cover the sorted, distinct ``positions``: adjacent tiles, and tiles at most
        ``max_gap_bytes`` apart (the gap is read and dropped: cheaper than one more request)."""
        if not len(positions):
            return []
        lay = self._layout()
        pack, start, end = lay.pack[positions], lay.offset[positions], lay.offset[positions] + lay.nbytes[positions]
        breaks = np.flatnonzero((start[1:] - end[:-1] > max_gap_bytes) | (pack[1:] != pack[:-1])) + 1
        bounds = [0, *breaks.tolist(), len(positions)]
        return [
            Run(lay.packs[int(pack[i])], int(start[i]), int(end[j - 1] - start[i]), positions[i:j])
            for i, j in pairwise(bounds)
        ]

    def runs(self, digests: Iterable[str], max_gap_bytes: int = 0) -> list[Run]:
        return self.runs_at(self.positions(digests), max_gap_bytes)

    def _announced(self, runs: Sequence[Run]) -> Iterator[tuple[str, int, Run]]:
        """``runs`` file by file, each file's runs all announced with ``POSIX_FADV_WILLNEED`` before the
        first is yielded (the kernel then has every read of the file in flight at once): (pack, fd, run)."""
        by_pack: dict[str, list[Run]] = {}
        for run in runs:
            by_pack.setdefault(run.pack, []).append(run)
        for pack, group in by_pack.items():
            fd = os.open(self.root / TILES / pack, os.O_RDONLY)
            try:
                for run in group:
                    os.posix_fadvise(fd, run.offset, run.nbytes, os.POSIX_FADV_WILLNEED)
                for run in group:
                    yield pack, fd, run
            finally:
                os.close(fd)

    def read_runs(self, runs: Sequence[Run], iov_for: Callable[[Run], list[memoryview]]) -> int:
        """Read ``runs``: announced first (:meth:`_announced`), then one ``preadv`` per run scattering
        straight into ``iov_for(run)``, one buffer per tile of the run, in order (gap bytes go to a
        scratch buffer). Return tile bytes read."""
        lay = self._layout()
        total = 0
        for pack, fd, run in self._announced(runs):
            iov = iov_for(run)
            gaps = lay.offset[run.positions[1:]] - (lay.offset[run.positions[:-1]] + lay.nbytes[run.positions[:-1]])
            if gaps.any():
                spaced = [iov[0]]
                for view, gap in zip(iov[1:], gaps.tolist(), strict=True):
                    if gap:
                        spaced.append(memoryview(bytearray(gap)))
                    spaced.append(view)
                iov = spaced
            offset = run.offset
            for i in range(0, len(iov), _IOV_MAX):
                part = iov[i : i + _IOV_MAX]
                want = sum(v.nbytes for v in part)
                got = os.preadv(fd, part, offset)
                if got != want:
                    raise OSError(f"short read from {pack}: {got} of {want} bytes")
                offset += got
            total += int(lay.nbytes[run.positions].sum())
        return total

    def read_raw(self, runs: Sequence[Run]) -> int:
        """Read ``runs`` as :meth:`read_runs` issues them (announced first, one ``preadv`` each) into one
        scratch buffer, with no per-tile buffers: the storage's and the kernel's part of a load.
        Return bytes read, gaps included."""
        scratch = memoryview(bytearray(max((r.nbytes for r in runs), default=0)))
        return sum(os.preadv(fd, [scratch[: run.nbytes]], run.offset) for _, fd, run in self._announced(runs))

    def read(self, digests: Iterable[str]) -> dict[str, np.ndarray]:
        """Read tiles into new arrays (see :meth:`read_runs`)."""
        lay = self._layout()
        out: dict[str, np.ndarray] = {}

        def iov_for(run: Run) -> list[memoryview]:
            views = []
            for i in run.positions.tolist():
                e = self._index[lay.order[i]]
                arr = out[lay.order[i]] = np.empty(e.shape, dtype=ST_DTYPES[e.dtype])
                views.append(arr.reshape(-1).view(np.uint8).data)
            return views

        self.read_runs(self.runs(digests), iov_for)
        return out

    def _layout(self) -> _Layout:
        if self._cached_layout is None or len(self._cached_layout.order) != len(self._index):
            order = sorted(self._index, key=lambda d: (self._index[d].pack, self._index[d].offset))
            packs = sorted({e.pack for e in self._index.values()})
            pack_no = {p: i for i, p in enumerate(packs)}
            self._cached_layout = _Layout(
                order,
                {d: i for i, d in enumerate(order)},
                packs,
                np.array([pack_no[self._index[d].pack] for d in order], dtype=np.int64),
                np.array([self._index[d].offset for d in order], dtype=np.int64),
                np.array([self._index[d].nbytes for d in order], dtype=np.int64),
            )
        return self._cached_layout

    def files(self) -> list[Path]:
        """The pack files this store's tiles live in."""
        return sorted(self.root / TILES / p for p in self._packs)
