"""The costly part of a multi-task setting, saved beside its pool and found again on the next run.

Scoring, masking and aligning the tasks is most of a study's time (about 5 of its 9 minutes on
``digits_resnet18``), and it is a function of the backbone's weights and the setting's
configuration only. :func:`save_masks` writes what it produces (per-task accuracies, both mask
families, every head with its norm, the alignment's search record) to one safetensors file,
atomically; :func:`load_masks` gives it back only when the file's fingerprint matches the weights and
configuration at hand, and otherwise (missing, another configuration, unreadable) returns None so
the caller computes it afresh. Masks are stored as indices into the backbone's tiles in forward
order, heads as plain arrays; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from stitching.atomic import write_bytes
from stitching.multitask.heads import Head
from stitching.multitask.masks import Alignment, TileMask
from stitching.multitask.tiles import TileGrid, TileKey

FILE = "masks.safetensors"
_VERSION = 1
_FAMILIES = ("independent", "aligned")


@dataclass(frozen=True)
class Masks:
    """What scoring, masking and aligning produce (all accuracies measured on the held-out split)."""

    dense_accuracy: dict[str, float]
    independent: dict[str, TileMask]
    independent_accuracy: dict[str, float]
    heads: dict[str, dict[str, Head]]  # family -> task -> head
    alignment: Alignment


def fingerprint(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> str:
    """sha256 over the configuration and every weight's name and bytes."""
    h = hashlib.sha256(json.dumps({"config": config, "v": _VERSION}, sort_keys=True).encode())
    for name, w in weights.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _keys(grids: Mapping[str, TileGrid]) -> list[TileKey]:
    return [k for g in grids.values() for k in g.tile_keys()]


def save_masks(path: Path, key: str, masks: Masks, grids: Mapping[str, TileGrid]) -> None:
    index = {k: i for i, k in enumerate(_keys(grids))}
    tensors: dict[str, np.ndarray] = {}
    families = {"independent": masks.independent, "aligned": masks.alignment.masks}
    for family in _FAMILIES:
        for task, mask in families[family].items():
            tensors[f"mask.{family}.{task}"] = np.array(sorted(index[k] for k in mask), dtype=np.int64)
        for task, head in masks.heads[family].items():
            for i, part in enumerate(head):
                tensors[f"head.{family}.{task}.{i}"] = np.ascontiguousarray(part)
    al = masks.alignment
    summary = {
        "dense_accuracy": masks.dense_accuracy,
        "independent_accuracy": masks.independent_accuracy,
        "aligned_accuracy": al.accuracy,
        "reference_accuracy": al.reference_accuracy,
        "core_fraction": al.core_fraction,
        "tolerance": al.tolerance,
        "evaluations": al.evaluations,
    }
    write_bytes(path, save(tensors, {"fingerprint": key, "summary": json.dumps(summary)}))


def load_masks(path: Path, key: str, grids: Mapping[str, TileGrid]) -> Masks | None:
    """The saved masks when ``path`` holds those of this fingerprint; None otherwise (warning when the
    file is there but cannot be read)."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            if meta.get("fingerprint") != key:
                return None
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        s = json.loads(meta["summary"])
        keys = _keys(grids)
        mask = {fam: {k.split(".", 2)[2]: frozenset(keys[int(i)] for i in v) for k, v in arrays.items() if k.startswith(f"mask.{fam}.")}
                for fam in _FAMILIES}
        parts: dict[str, dict[str, dict[int, np.ndarray]]] = {fam: {} for fam in _FAMILIES}
        for k, v in arrays.items():
            if k.startswith("head."):
                _, fam, task, i = k.split(".")
                parts[fam].setdefault(task, {})[int(i)] = v
        heads = {fam: {t: tuple(p[i] for i in sorted(p)) for t, p in per.items()} for fam, per in parts.items()}
        alignment = Alignment(
            mask["aligned"], {t: float(v) for t, v in s["core_fraction"].items()}, dict(s["aligned_accuracy"]),
            dict(s["reference_accuracy"]), float(s["tolerance"]), int(s["evaluations"]),
        )
        out = Masks(dict(s["dense_accuracy"]), mask["independent"], dict(s["independent_accuracy"]), heads, alignment)
    except (OSError, ValueError, KeyError, IndexError, TypeError, SafetensorError) as err:
        warnings.warn(f"{path}: unreadable ({err}); computing the masks again", stacklevel=2)
        return None
    tasks = set(out.dense_accuracy)
    if not all(set(d) == tasks for d in (out.independent, alignment.masks, heads["independent"], heads["aligned"])):
        warnings.warn(f"{path}: the tasks' entries disagree; computing the masks again", stacklevel=2)
        return None
    return out
