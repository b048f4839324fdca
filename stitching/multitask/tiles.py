"""Block-granular weight splitting: cut weight matrices into fixed-size tiles, digest them, put them back.

A tile is one ``tile_size x tile_size`` block of a 2-D weight (edge tiles may be smaller). Its
content digest is the sha256 of its dtype, shape and bytes, so identical tiles share one digest
and are stored and loaded once. A tile that is all zero (masked away) is never emitted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class TileKey:
    """Position of one tile: layer name and tile row/column in that layer's weight."""

    layer: str
    row: int
    col: int

    def label(self) -> str:
        return f"{self.layer}:{self.row}:{self.col}"

    @staticmethod
    def parse(label: str) -> TileKey:
        layer, row, col = label.rsplit(":", 2)
        return TileKey(layer, int(row), int(col))


@dataclass(frozen=True)
class TileGrid:
    """How one layer's weight of ``shape`` is cut into tiles of ``tile_size``."""

    layer: str
    shape: tuple[int, int]
    tile_size: int

    @property
    def rows(self) -> int:
        return -(-self.shape[0] // self.tile_size)

    @property
    def cols(self) -> int:
        return -(-self.shape[1] // self.tile_size)

    def tile_keys(self) -> list[TileKey]:
        return [TileKey(self.layer, r, c) for r in range(self.rows) for c in range(self.cols)]

    def slices(self, key: TileKey) -> tuple[slice, slice]:
        return self.slices_at(key.row, key.col)

    def slices_at(self, row: int, col: int) -> tuple[slice, slice]:
        t = self.tile_size
        return slice(row * t, min((row + 1) * t, self.shape[0])), slice(col * t, min((col + 1) * t, self.shape[1]))


def grids(shapes: Mapping[str, tuple[int, int]], tile_size: int) -> dict[str, TileGrid]:
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    return {name: TileGrid(name, (int(s[0]), int(s[1])), tile_size) for name, s in shapes.items()}


def all_keys(layer_grids: Mapping[str, TileGrid]) -> list[TileKey]:
    return [k for g in layer_grids.values() for k in g.tile_keys()]


def tile_digest(tile: np.ndarray) -> str:
    """sha256 of dtype, shape and bytes: equal digests mean interchangeable tiles."""
    h = hashlib.sha256(f"{tile.dtype.str}{tuple(tile.shape)}|".encode())
    h.update(np.ascontiguousarray(tile).tobytes())
    return h.hexdigest()


def split_tiles(
    weights: Mapping[str, np.ndarray], tile_size: int, keep: Iterable[TileKey] | None = None
) -> dict[TileKey, np.ndarray]:
    """Tiles of ``weights`` (restricted to ``keep`` when given); all-zero tiles are dropped."""
    layer_grids = grids({n: (w.shape[0], w.shape[1]) for n, w in weights.items()}, tile_size)
    wanted = set(keep) if keep is not None else None
    out: dict[TileKey, np.ndarray] = {}
    for name, grid in layer_grids.items():
        w = weights[name]
        for key in grid.tile_keys():
            if wanted is not None and key not in wanted:
                continue
            tile = np.ascontiguousarray(w[grid.slices(key)])
            if np.any(tile):
                out[key] = tile
    return out


def tile_mask_to_dense(layer_grids: Mapping[str, TileGrid], keep: Iterable[TileKey]) -> dict[str, np.ndarray]:
    """Element-level boolean masks that are True exactly on the kept tiles."""
    masks = {name: np.zeros(g.shape, dtype=bool) for name, g in layer_grids.items()}
    for key in keep:
        masks[key.layer][layer_grids[key.layer].slices(key)] = True
    return masks


def assemble(
    layer_grids: Mapping[str, TileGrid], tiles: Mapping[TileKey, np.ndarray], dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """Dense weights with ``tiles`` in place and zeros elsewhere."""
    out: dict[str, np.ndarray] = {name: np.zeros(g.shape, dtype=dtype) for name, g in layer_grids.items()}
    for key, tile in tiles.items():
        out[key.layer][layer_grids[key.layer].slices(key)] = tile
    return out
