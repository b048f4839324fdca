"""Fixtures of the runtime tests: a scratch directory and a real digits pool, one per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from stitching.pool import Pool
from tests.sparseloom.runtime_helpers import digits_pool


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def pool(dirs: Path) -> Pool:
    return digits_pool(dirs / "pool", dirs / "cache")
