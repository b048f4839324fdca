"""Atomic file writes for every package: a temporary file in the same directory, fsync, then ``os.replace``.

Readers see the old file or the new one, never a partial one. It lives in the
lowest layer so stitching, backends and sparseloom all share it.

A temporary file is named ``.<name>.<pid>.<random>.tmp`` (maybe with an extension after it). A writer that is killed leaves one
behind; the next write of the same file (or :func:`remove_stale`) deletes those whose process is
gone, and never one that a live process is still writing.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _stale(tmp: Path) -> bool:
    """A temporary file whose writer is gone (names from before pids were in them count as gone)."""
    parts = tmp.name[: tmp.name.rindex(".tmp")].rsplit(".", 2)
    pid = parts[1] if len(parts) == 3 else ""
    return not (pid.isdigit() and _alive(int(pid)))


def remove_stale(directory: Path, pattern: str = ".*.tmp", recursive: bool = False) -> int:
    """Delete the temporaries in ``directory`` left by killed writers; how many were deleted."""
    found = Path(directory).rglob(pattern) if recursive else Path(directory).glob(pattern)
    count = 0
    for tmp in found:
        if ".tmp" in tmp.name and _stale(tmp):
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def write_bytes(path: Path, data: bytes | bytearray | memoryview) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{glob.escape(path.name)}.*.tmp")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # a failed write (a full disk) names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))
