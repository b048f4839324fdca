"""Shared fixtures: the digits model is trained once per session into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from stitching import zoo
from stitching.partition import BaseModel
from stitching.pool import ModelRequest, Pool, build_pool
from stitching.prune import Recipe

SMALL_RECIPES = (Recipe("structured", 0.5), Recipe("unstructured", 0.9), Recipe("int8"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_base(cache_dir: Path) -> BaseModel:
    return zoo.load("digits_cnn", cache_dir)


@pytest.fixture(scope="session")
def digits_pool(cache_dir: Path, digits_base: BaseModel, tmp_path_factory: pytest.TempPathFactory) -> Pool:
    root = tmp_path_factory.mktemp("pool") / "digits"
    return build_pool(root, [ModelRequest("digits_cnn", "digits_cnn", 4, None, SMALL_RECIPES)], cache_dir, progress=False)
