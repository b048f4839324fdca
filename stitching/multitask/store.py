"""Content-addressed tile storage on disk, in two layouts behind one small interface.

Both layouts address a tile by its sha256 digest (see :mod:`tiles`) and write files atomically.

* :class:`FileTileStore`: one safetensors file per tile, ``ROOT/tiles/ab/<digest>.safetensors``
  holding one tensor named ``tile``.
* :class:`PackedTileStore`: tiles packed into safetensors files ``ROOT/packs/pack-NNNNN.safetensors``
  (tensor name ``<seq>_<digest>``, so the file keeps put order), plus ``ROOT/index.json`` mapping each
  digest to ``[pack, byte offset, byte length, dtype, shape]``. A tile is still individually
  loadable: one ``pread`` of its byte range. Reading a set of tiles coalesces adjacent ranges,
  so tiles put in the order they are usually needed together are read sequentially.

``read`` does real file I/O (no mmap, no cache of ours); ``evict_page_cache`` drops the OS page
cache of the store's files so the next read comes from storage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
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
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
        base = 8 + header_len
        for tensor_name, meta in header.items():
            if tensor_name == "__metadata__":
                continue
            begin, end = meta["data_offsets"]
            digest = tensor_name.split("_", 1)[1]
            self._index[digest] = PackEntry(name, base + begin, end - begin, meta["dtype"], tuple(meta["shape"]))
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

    def read(self, digests: Iterable[str], max_gap_bytes: int = 0) -> dict[str, np.ndarray]:
        """Read tiles with one ``preadv`` per run of adjacent byte ranges in the same pack.

        All runs are announced with ``POSIX_FADV_WILLNEED`` first, so the kernel has every read in
        flight at once instead of one readahead window at a time.
        """
        runs = self.runs(digests, max_gap_bytes)
        fds = {pack: os.open(self.root / "packs" / pack, os.O_RDONLY) for pack in {r[0] for r in runs}}
        out: dict[str, np.ndarray] = {}
        try:
            for pack, offset, length, _ in runs:
                os.posix_fadvise(fds[pack], offset, length, os.POSIX_FADV_WILLNEED)
            for pack, offset, length, members in runs:
                buf = bytearray(length)
                got = os.preadv(fds[pack], [buf], offset)
                if got != length:
                    raise OSError(f"short read from {pack}: {got} of {length} bytes")
                for digest in members:
                    e = self._index[digest]
                    dtype = _ST_DTYPES[e.dtype]
                    out[digest] = np.frombuffer(
                        buf, dtype=dtype, count=e.nbytes // dtype.itemsize, offset=e.offset - offset
                    ).reshape(e.shape)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out

    def files(self) -> list[Path]:
        return sorted((self.root / "packs").glob("pack-*.safetensors"))
