"""Content-addressed tile storage on disk, in two layouts behind one small interface.

Both layouts address a tile by its sha256 digest (see :mod:`tiles`) and write files atomically.

* :class:`FileTileStore`: one safetensors file per tile, ``ROOT/tiles/ab/<digest>.safetensors``
  holding one tensor named ``tile``.
* :class:`PackedTileStore`: tiles packed into safetensors files ``ROOT/packs/pack-NNNNN.safetensors``
  (tensor name ``<seq>_<digest>``, so the file keeps put order), plus ``ROOT/index.json`` mapping each
  digest to ``[pack, byte offset, byte length, dtype, shape]``. A tile is still individually
  loadable: one ``pread`` of its byte range. Reading a set of tiles coalesces adjacent ranges into
  one ``preadv`` per run that scatters straight into the caller's buffers (no copy of ours), so tiles
  put in the order they are usually needed together are read sequentially.

``read`` does real file I/O (no mmap, no cache of ours); ``evict_page_cache`` drops the OS page
cache of the store's files so the next read comes from storage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from stitching.atomic import write_bytes, write_json

_ST_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
}


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
        name: np.frombuffer(blob, dtype=_ST_DTYPES[dtype], count=(end - begin) // _ST_DTYPES[dtype].itemsize, offset=begin).reshape(shape)
        for name, (dtype, shape, begin, end) in safetensors_entries(blob).items()
    }


def _by_pack(runs: Iterable[tuple[str, int, int, list[str]]]) -> dict[str, list[tuple[str, int, int, list[str]]]]:
    out: dict[str, list[tuple[str, int, int, list[str]]]] = {}
    for run in runs:
        out.setdefault(run[0], []).append(run)
    return out


class TileStore(Protocol):
    """Put/get/has tiles by digest, batch-read them with real I/O, list files for cache eviction."""

    def put(self, digest: str, tile: np.ndarray) -> None: ...

    def has(self, digest: str) -> bool: ...

    def get(self, digest: str) -> np.ndarray: ...

    def read(self, digests: Iterable[str]) -> dict[str, np.ndarray]: ...

    def files(self) -> list[Path]: ...

    def flush(self) -> None: ...


def evict_page_cache(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop cached pages of ``paths`` (clean pages go; files are fsynced on write)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _read_file(path: Path) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        return handle.read()


class FileTileStore:
    """One safetensors file per tile."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        return self.root / "tiles" / digest[:2] / f"{digest}.safetensors"

    def put(self, digest: str, tile: np.ndarray) -> None:
        path = self._path(digest)
        if not path.exists():  # content-addressed: same digest, same bytes
            write_bytes(path, st_save({"tile": np.ascontiguousarray(tile)}))

    def has(self, digest: str) -> bool:
        return self._path(digest).exists()

    def get(self, digest: str) -> np.ndarray:
        return self.read([digest])[digest]

    def read(self, digests: Iterable[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for digest in digests:
            if digest not in out:
                out[digest] = st_load(_read_file(self._path(digest)))["tile"]
        return out

    def files(self) -> list[Path]:
        return sorted((self.root / "tiles").glob("*/*.safetensors"))

    def flush(self) -> None:
        """Nothing is buffered: each ``put`` is already on disk."""


@dataclass(frozen=True)
class PackEntry:
    """Where one tile lives inside a pack file."""

    pack: str
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


class PackedTileStore:
    """Tiles packed into safetensors files with a digest index; ``flush`` writes pending tiles as a pack."""

    def __init__(self, root: Path, max_pack_bytes: int = 64 << 20) -> None:
        self.root = Path(root)
        self.max_pack_bytes = max_pack_bytes
        self._index: dict[str, PackEntry] = {}
        self._pending: dict[str, np.ndarray] = {}
        index_path = self.root / "index.json"
        if index_path.exists():
            raw = json.loads(index_path.read_text(encoding="utf-8"))
            self._index = {
                d: PackEntry(e[0], int(e[1]), int(e[2]), str(e[3]), tuple(int(x) for x in e[4]))
                for d, e in raw["tiles"].items()
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
        """Write pending tiles (in put order) into new pack files, then the index, both atomically."""
        if not self._pending:
            return
        packs = sorted((self.root / "packs").glob("pack-*.safetensors"))
        seq = len(packs)
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
        write_json(
            self.root / "index.json",
            {
                "layout": "safetensors packs; entry = [pack, byte offset, byte length, dtype, shape]",
                "tiles": {
                    d: [e.pack, e.offset, e.nbytes, e.dtype, list(e.shape)] for d, e in self._index.items()
                },
            },
        )

    def _write_pack(self, seq: int, batch: list[tuple[str, np.ndarray]]) -> None:
        name = f"pack-{seq:05d}.safetensors"
        blob = st_save({f"{i:08d}_{d}": t for i, (d, t) in enumerate(batch)})
        for tensor_name, (dtype, shape, begin, end) in safetensors_entries(blob).items():
            digest = tensor_name.split("_", 1)[1]
            self._index[digest] = PackEntry(name, begin, end - begin, dtype, shape)
        write_bytes(self.root / "packs" / name, blob)

    def runs(self, digests: Iterable[str], max_gap_bytes: int = 0) -> list[tuple[str, int, int, list[str]]]:
        """Byte ranges ``(pack, offset, length, digests)`` that cover ``digests``, adjacent ones merged."""
        wanted = sorted(set(digests), key=lambda d: (self._index[d].pack, self._index[d].offset))
        out: list[tuple[str, int, int, list[str]]] = []
        for digest in wanted:
            e = self._index[digest]
            if out and out[-1][0] == e.pack and e.offset - (out[-1][1] + out[-1][2]) <= max_gap_bytes:
                pack, offset, _, members = out[-1]
                members.append(digest)
                out[-1] = (pack, offset, e.offset + e.nbytes - offset, members)
            else:
                out.append((e.pack, e.offset, e.nbytes, [digest]))
        return out

    def digests(self) -> list[str]:
        """Every stored digest, in file order (pack, then offset)."""
        return sorted(self._index, key=lambda d: (self._index[d].pack, self._index[d].offset))

    def prefetch(self, runs: Iterable[tuple[str, int, int, list[str]]]) -> None:
        """Announce byte runs with ``POSIX_FADV_WILLNEED``: the kernel starts reading them all at once."""
        for pack, group in _by_pack(runs).items():
            fd = os.open(self.root / "packs" / pack, os.O_RDONLY)
            try:
                for _, offset, length, _ in group:
                    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def read_into(
        self, runs: Iterable[tuple[str, int, int, list[str]]], buffer_for: Callable[[str, PackEntry], memoryview]
    ) -> int:
        """Read each run (from :meth:`runs`) with ``preadv`` scattering straight into
        ``buffer_for(digest, entry)``, a writable buffer of ``entry.nbytes``; gap bytes inside a run go
        to a scratch buffer. Return the tile bytes read."""
        total = 0
        for pack, group in _by_pack(runs).items():
            fd = os.open(self.root / "packs" / pack, os.O_RDONLY)
            try:
                for _, offset, _, members in group:
                    iov: list[memoryview] = []
                    pos = offset
                    for d in members:
                        e = self._index[d]
                        if e.offset > pos:
                            iov.append(memoryview(bytearray(e.offset - pos)))
                        iov.append(buffer_for(d, e))
                        pos = e.offset + e.nbytes
                        total += e.nbytes
                    for i in range(0, len(iov), _IOV_MAX):
                        part = iov[i : i + _IOV_MAX]
                        want = sum(v.nbytes for v in part)
                        got = os.preadv(fd, part, offset)
                        if got != want:
                            raise OSError(f"short read from {pack}: {got} of {want} bytes")
                        offset += got
            finally:
                os.close(fd)
        return total

    def read(self, digests: Iterable[str], max_gap_bytes: int = 0) -> dict[str, np.ndarray]:
        """Read tiles into new arrays: every run announced first, then one ``preadv`` per run."""
        runs = self.runs(digests, max_gap_bytes)
        out: dict[str, np.ndarray] = {}

        def buffer_for(digest: str, e: PackEntry) -> memoryview:
            out[digest] = np.empty(e.shape, dtype=_ST_DTYPES[e.dtype])
            return out[digest].reshape(-1).view(np.uint8).data

        self.prefetch(runs)
        self.read_into(runs, buffer_for)
        return out

    def files(self) -> list[Path]:
        return sorted((self.root / "packs").glob("pack-*.safetensors"))
