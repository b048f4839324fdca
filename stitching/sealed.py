"""Cache records that carry the sha256 of their content, written under a file lock.

A sealed record is ``{"sealed": "sha256:<hex>", "data": ...}``: the digest is over the canonical
JSON of ``data``, so any changed, truncated or torn byte is found when the record is read. A bad
record is named in a :class:`SealWarning` and treated as absent, so the caller recomputes it;
it is never served. :func:`cached` computes a record once across processes: the second process
waits on the lock, then reads what the first one wrote.

Records written before sealing existed (plain JSON, no seal) are read once and sealed in place:
they had no digest to check.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from stitching.atomic import write_text

T = TypeVar("T")


class SealWarning(UserWarning):
    """A cache record whose bytes are not the ones written: it is recomputed."""


def _digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def write(path: Path, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` sealed with its digest, atomically."""
    write_text(Path(path), json.dumps({"sealed": _digest(data), "data": data}, indent=indent) + "\n")


def read(path: Path, legacy: Callable[[Any], bool] | None = None) -> Any | None:
    """The record's data; None when the file is absent, or bad (then with a :class:`SealWarning`
    naming it and what is wrong). ``legacy(doc)``: whether an unsealed document is an old record
    to accept (and seal in place); by default every unsealed JSON object (not array) is."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        _bad(path, f"unreadable ({err})")
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        _bad(path, f"not valid JSON ({err.msg} at line {err.lineno}): truncated or altered")
        return None
    if isinstance(doc, dict) and set(doc) == {"sealed", "data"}:
        if doc["sealed"] != _digest(doc["data"]):
            _bad(path, "altered: its content does not match its sha256")
            return None
        return doc["data"]
    unsealed = not (isinstance(doc, dict) and "sealed" in doc)
    if unsealed and (legacy(doc) if legacy is not None else isinstance(doc, dict)):
        try:
            write(path, doc)
        except OSError:
            pass  # a read-only cache still serves what it holds
        return doc
    _bad(path, "not a sealed record")
    return None


def _bad(path: Path, problem: str) -> None:
    warnings.warn(f"{path}: {problem}; recomputing it", SealWarning, stacklevel=3)


def _decoded(path: Path, decode: Callable[[Any], T]) -> T | None:
    data = read(path)
    if data is None:
        return None
    try:
        return decode(data)
    except (ValueError, KeyError, TypeError) as err:  # sealed, but not what this version reads
        warnings.warn(f"{path}: unreadable record ({err}); recomputing it", SealWarning, stacklevel=3)
        return None


def lock(path: Path) -> FileLock:
    """The lock that writers of ``path`` take turns on (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"))


def cached(path: Path, compute: Callable[[], T], encode: Callable[[T], Any],
           decode: Callable[[Any], T]) -> T:
    """``decode`` of the sealed record at ``path``, or ``compute()`` sealed there first (once across
    processes: the lock is held while computing). A bad record is recomputed with a warning."""
    found = _decoded(path, decode)
    if found is not None:
        return found
    with lock(path):
        found = _decoded(path, decode)  # another process may have written it while this one waited
        if found is not None:
            return found
        value = compute()
        write(path, encode(value))
        return value
