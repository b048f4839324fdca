"""Per-task manifests (which tile digest sits where) and writing them into a tile store.

A :class:`HeadManifest` lists, for one task under one mask, the digest of every kept backbone tile
by position, plus the digests of its own tensors (head weight and bias, and a per-channel norm
where the backbone has one; stored like tiles). The monolithic baseline stores each task's whole
sparse model as one safetensors file instead: ``<layer>.tiles`` (stacked kept tiles, ``[n, t, t]``),
``<layer>.index`` (``[n, 2]`` tile row/col), then its own tensors under :data:`HEAD_NAMES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

from stitching.atomic import write_bytes
from stitching.multitask.store import PackedTileStore
from stitching.multitask.heads import Head
from stitching.multitask.tiles import TileKey, split_tiles, tile_digest

HEAD_NAMES: tuple[str, ...] = ("head.weight", "head.bias", "head.norm")


@dataclass(frozen=True)
class HeadManifest:
    task: str
    tiles: dict[TileKey, str]
    head: tuple[str, ...]  # digests of the task's own tensors, in HEAD_NAMES order
    nbytes: dict[str, int]  # digest -> bytes, for every digest above

    def digests(self) -> frozenset[str]:
        return frozenset(self.tiles.values()) | frozenset(self.head)

    def total_bytes(self) -> int:
        return sum(self.nbytes[d] for d in self.digests())


def make_manifest(
    task: str,
    weights: Mapping[str, np.ndarray],
    keep: Iterable[TileKey],
    head: Head,
    tile_size: int,
) -> tuple[HeadManifest, dict[str, np.ndarray]]:
    """The manifest of ``task`` and the tensors it names (digest -> array)."""
    tensors: dict[str, np.ndarray] = {}
    positions: dict[TileKey, str] = {}
    for key, tile in split_tiles(weights, tile_size, keep).items():
        d = tile_digest(tile)
        tensors[d] = tile
        positions[key] = d
    own = []
    for array in head:
        a = np.ascontiguousarray(array)
        own.append(tile_digest(a))
        tensors[own[-1]] = a
    return HeadManifest(task, positions, tuple(own), {d: t.nbytes for d, t in tensors.items()}), tensors


def store_in_order(
    store: PackedTileStore,
    manifests: Iterable[HeadManifest],
    tensors: Mapping[str, np.ndarray],
    switches: Iterable[tuple[int, int]] | None = None,
) -> None:
    """Put every tensor once, grouping digests used by the same set of manifests together.

    Digests with the same usage signature (the set of manifests that use them) are written next to
    each other, and the groups are ordered by :func:`group_order` so that the tiles a switch from
    one manifest to another must read form few contiguous runs. ``switches`` are the ordered pairs
    of manifest positions a switch can go between (default: every pair); manifests of two mask
    families that share a store never switch into each other, so their pairs need not be counted.
    """
    manifests = list(manifests)
    users: dict[str, list[int]] = {}
    for i, m in enumerate(manifests):
        for d in m.digests():
            users.setdefault(d, []).append(i)
    pairs = list(switches) if switches is not None else [(a, b) for a in range(len(manifests)) for b in range(len(manifests)) if a != b]
    ordered = group_order({frozenset(u) for u in users.values()}, pairs)
    rank = {sig: k for k, sig in enumerate(ordered)}
    position = {d: k for m in manifests for k, d in m.tiles.items()}
    head_rank = TileKey("~head", 0, 0)  # heads after backbone tiles within a group
    order = sorted(users, key=lambda d: (rank[frozenset(users[d])], position.get(d, head_rank), d))
    for d in order:
        store.put(d, tensors[d])
    store.flush()


def _reads(signatures: Sequence[frozenset[int]], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """``[groups, pairs]``: whether a switch A -> B reads the group (B uses it and A does not)."""
    return np.array([[b in sig and a not in sig for a, b in pairs] for sig in signatures], dtype=bool).reshape(len(signatures), len(pairs))


def _runs(read: np.ndarray) -> int:
    """Contiguous runs of read groups, summed over the switches, for groups in row order."""
    if not len(read):
        return 0
    return int(read[0].sum() + (read[1:] & ~read[:-1]).sum())


def group_order(
    signatures: Iterable[frozenset[int]], pairs: Sequence[tuple[int, int]], restarts: int = 8, seed: int = 0
) -> list[frozenset[int]]:
    """An order of the usage groups that keeps the runs the ``pairs`` switches read few.

    Local search (move one group anywhere while it helps) from the sorted order and seeded
    shuffles; a few hundred groups take a few seconds.
    """
    start = sorted(signatures, key=lambda s: (sorted(s), len(s)))
    read = _reads(start, pairs)
    rng = np.random.default_rng(seed)
    best, best_cost = list(range(len(start))), _runs(read)
    for attempt in range(restarts):
        order = list(range(len(start))) if attempt == 0 else rng.permutation(len(start)).tolist()
        cost = _runs(read[order])
        improved = True
        while improved:
            improved = False
            for i in range(len(order)):
                for j in range(len(order)):
                    if i == j:
                        continue
                    trial = order[:i] + order[i + 1 :]
                    trial.insert(j, order[i])
                    c = _runs(read[trial])
                    if c < cost:
                        order, cost, improved = trial, c, True
        if cost < best_cost:
            best, best_cost = order, cost
    return [start[i] for i in best]


def write_monolithic(path: Path, manifest: HeadManifest, tensors: Mapping[str, np.ndarray], tile_size: int) -> None:
    """One file with the whole sparse model of a task (the baseline's unit of loading)."""
    out: dict[str, np.ndarray] = {}
    for layer in sorted({k.layer for k in manifest.tiles}):
        keys = sorted(k for k in manifest.tiles if k.layer == layer)
        full = [k for k in keys if tensors[manifest.tiles[k]].shape == (tile_size, tile_size)]
        if full:
            out[f"{layer}.tiles"] = np.stack([tensors[manifest.tiles[k]] for k in full])
            out[f"{layer}.index"] = np.array([[k.row, k.col] for k in full], dtype=np.int32)
        for k in keys:
            if k not in full:  # an uneven edge tile of a layer the tiles do not cut evenly
                out[f"{layer}.edge.{k.row}.{k.col}"] = tensors[manifest.tiles[k]]
    for name, digest in zip(HEAD_NAMES, manifest.head, strict=False):
        out[name] = tensors[digest]
    write_bytes(path, st_save(out))


def monolithic_edges(loaded: Mapping[str, np.ndarray]) -> dict[TileKey, np.ndarray]:
    """The uneven edge tiles of a monolithic file, by position."""
    out: dict[TileKey, np.ndarray] = {}
    for name, value in loaded.items():
        layer, sep, pos = name.rpartition(".edge.")
        if sep:
            row, col = pos.split(".")
            out[TileKey(layer, int(row), int(col))] = value
    return out


def monolithic_head(loaded: Mapping[str, np.ndarray]) -> Head:
    """A task's own tensors from the tensors of its monolithic file."""
    return tuple(loaded[n] for n in HEAD_NAMES if n in loaded)


def monolithic_tiles(loaded: Mapping[str, np.ndarray]) -> tuple[dict[TileKey, np.ndarray], Head]:
    """Tiles by position and the head, from the tensors of a monolithic file."""
    tiles: dict[TileKey, np.ndarray] = {}
    for name, value in loaded.items():
        if name.endswith(".tiles"):
            layer = name[: -len(".tiles")]
            for (row, col), tile in zip(loaded[f"{layer}.index"].tolist(), value, strict=True):
                tiles[TileKey(layer, int(row), int(col))] = tile
    return tiles | monolithic_edges(loaded), monolithic_head(loaded)
