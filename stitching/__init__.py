"""Partition, prune, store (pool) and stitch blocks of DNNs; estimate stitched variants' accuracy.

Imports none of sparseloom, scheduler or backends. Main entry points:

- :func:`stitching.zoo.load` / :func:`stitching.zoo.evaluator`: base models and their accuracy;
- :func:`stitching.pool.build_pool`, :class:`stitching.pool.Pool`, :func:`stitching.pool.verify`;
- :func:`stitching.stitch.stitch`, :func:`stitching.stitch.fit_estimator`, :class:`stitching.stitch.StitchedVariant`.
"""

from __future__ import annotations

from stitching.partition import BaseModel, BlockModule, TensorSpec
from stitching.pool import (
    Block,
    ModelRequest,
    Pool,
    PoolProblem,
    PoolSize,
    build_pool,
    verify,
)
from stitching.prune import Recipe, parse_recipe
from stitching.stitch import (
    Estimator,
    Measurer,
    StitchedVariant,
    StitchReport,
    fit_estimator,
    stitch,
)

__all__ = [
    "BaseModel",
    "Block",
    "BlockModule",
    "Estimator",
    "Measurer",
    "ModelRequest",
    "Pool",
    "PoolProblem",
    "PoolSize",
    "Recipe",
    "StitchReport",
    "StitchedVariant",
    "TensorSpec",
    "build_pool",
    "fit_estimator",
    "parse_recipe",
    "stitch",
    "verify",
]
