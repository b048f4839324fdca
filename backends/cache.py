"""On-disk cache of compiled blocks, keyed by block digest, target and tuning state.

Artifacts are whatever TVM's ``export_library`` writes (a shared object for
runnable or cross-linked targets, a tar of objects or sources otherwise)
plus a small JSON record. Both are written to a temporary name in the cache
directory and moved into place with ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm

from stitching.atomic import write_json


def canonical_target(target: dict[str, str | int]) -> str:
    """The target dict as sorted JSON, so equal targets give equal keys."""
    return json.dumps({k: target[k] for k in sorted(target)}, separators=(",", ":"))


def cache_key(digest: str, input_signature: str, target: dict[str, str | int], tuning_state: str, pipeline: str) -> str:
    """sha256 of everything that changes the compiled code."""
    parts = [digest, input_signature, canonical_target(target), tuning_state, pipeline, tvm.__version__]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def tuning_state(tuning_db: Path | None) -> str:
    """``untuned``, or a hash of the tuning records the compile would apply."""
    if tuning_db is None:
        return "untuned"
    digest = hashlib.sha256()
    for name in ("database_tuning_record.json", "schedule_choices.json"):
        path = tuning_db / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return "tuned:" + digest.hexdigest()[:16]


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

    def get(self, key: str) -> CacheEntry | None:
        path = self._record_path(key)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        artifact = self.root / record["artifact"]
        if not artifact.exists():
            return None
        self.hits += 1
        return CacheEntry(key=key, artifact=artifact, record=record)

    def put(self, key: str, suffix: str, write: Callable[[Path], None], record: dict[str, Any]) -> CacheEntry:
        """Write an artifact with ``write(tmp_path)`` and its record, both atomically."""
        self.compiles += 1
        artifact = self.root / f"{key}{suffix}"
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=suffix, prefix=".tmp-")
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, artifact)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        full = dict(record, artifact=artifact.name)
        write_json(self._record_path(key), full, indent=1, sort_keys=True)
        return CacheEntry(key=key, artifact=artifact, record=full)
