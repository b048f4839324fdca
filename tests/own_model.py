"""The residual CNN of ``examples/own_model.py``, loaded from the example itself, so the tests
exercise the very model and data a user reads there (the example stays one self-contained file)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"


@functools.cache
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_own_model", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
