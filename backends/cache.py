"""On-disk cache of compiled blocks, keyed by block digest, target and tuning state.

Artifacts are whatever TVM's ``export_library`` writes (a shared object for
runnable or cross-linked targets, a tar of objects or sources otherwise)
plus a small sealed JSON record (:mod:`stitching.sealed`) holding the
artifact's sha256. Both are written to a temporary name in the cache
directory and moved into place with ``os.replace``. A record or artifact
whose bytes changed is a miss, with a warning, and is compiled again;
processes compiling one key take turns on its lock (:meth:`CompileCache.lock`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from filelock import FileLock

from stitching import sealed
from stitching.atomic import remove_stale


def canonical_target(target: dict[str, str | int]) -> str:
    """The target dict as sorted JSON, so equal targets give equal keys."""
    return json.dumps({k: target[k] for k in sorted(target)}, separators=(",", ":"))


def cache_key(digest: str, input_signature: str, target: dict[str, str | int], tuning_state: str, pipeline: str) -> str:
    """sha256 of everything that changes the compiled code."""
    parts = [digest, input_signature, canonical_target(target), tuning_state, pipeline, tvm.__version__]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A cached artifact and what the compile recorded about it."""

    key: str
    artifact: Path
    record: dict[str, Any]


class CompileCache:
    """A directory of compiled blocks. ``compiles`` counts cache misses in this instance."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.compiles = 0
        self.hits = 0

    def _record_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def lock(self, key: str) -> FileLock:
        """Held while compiling ``key``, so a second process waits and then hits the cache."""
        return sealed.lock(self._record_path(key))

    def get(self, key: str) -> CacheEntry | None:
        path = self._record_path(key)
        if not path.exists():
            return None
        record = sealed.read(path, legacy=lambda doc: "artifact" in doc)
        if not isinstance(record, dict):
            return None
        artifact = self.root / str(record.get("artifact"))
        if not artifact.is_file():
            return None
        actual = _file_sha256(artifact)
        if "artifact_sha256" not in record:  # written before records held it: seal what is there
            record = dict(record, artifact_sha256=actual)
            try:
                sealed.write(path, record)
            except OSError:
                pass  # a read-only cache still serves what it holds
        if actual != record["artifact_sha256"]:
            warnings.warn(f"{artifact}: altered: its bytes do not match the recorded sha256; compiling it again",
                          sealed.SealWarning, stacklevel=2)
            return None
        self.hits += 1
        return CacheEntry(key=key, artifact=artifact, record=record)

    def put(self, key: str, suffix: str, write: Callable[[Path], None], record: dict[str, Any]) -> CacheEntry:
        """Write an artifact with ``write(tmp_path)`` and its record, both atomically."""
        self.compiles += 1
        artifact = self.root / f"{key}{suffix}"
        remove_stale(self.root, ".*.tmp*")  # left by compiles that were killed
        # The extension stays last: TVM's export picks the format from it.
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp" + suffix, prefix=f".{key}.{os.getpid()}.")
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, artifact)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        full = dict(record, artifact=artifact.name, artifact_sha256=_file_sha256(artifact))
        sealed.write(self._record_path(key), full)
        return CacheEntry(key=key, artifact=artifact, record=full)
