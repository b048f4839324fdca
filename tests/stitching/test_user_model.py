"""User models given as ``pkg.mod:factory``: cut between top-level children, pruned, pooled, rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stitching.pool import ModelRequest, build_pool, verify
from stitching.prune import Recipe
from stitching.stitch import stitch

FACTORY = f"{__name__}:make_mlp"


class Residual(nn.Module):
    """Not a chain of its children: its forward adds a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + x


def make_mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def make_residual() -> nn.Module:
    torch.manual_seed(1)
    return Residual()


def test_a_user_model_is_pooled_and_rebuilt(tmp_path: Path) -> None:
    request = ModelRequest("mlp", None, 3, None, (Recipe("unstructured", 0.5), Recipe("int8")), FACTORY, (1, 8))
    pool = build_pool(tmp_path / "p", [request], progress=False)
    assert verify(tmp_path / "p") == []
    assert pool.model_info("mlp")["accuracy_known"] is False
    x = torch.randn(5, 8)
    for variant in ("dense", "int8"):
        out = x
        for p in range(3):
            out = pool.load_module(pool.block("mlp", p, variant).digest)(out)
        assert torch.allclose(out, make_mlp()(x), atol=2e-2 if variant == "int8" else 1e-6)
    assert all(c.accuracy_source == "unknown" for c in stitch(pool, "mlp", None, progress=False).candidates)


def test_structured_pruning_of_a_user_model_is_refused(tmp_path: Path) -> None:
    request = ModelRequest("mlp", None, 2, None, (Recipe("structured", 0.5),), FACTORY, (1, 8))
    with pytest.raises(ValueError, match="structured pruning needs"):
        build_pool(tmp_path / "p", [request], progress=False)


def test_a_model_that_is_not_a_chain_of_children_is_refused(tmp_path: Path) -> None:
    request = ModelRequest("res", None, 2, None, (), f"{__name__}:make_residual", (1, 8))
    with pytest.raises(ValueError, match="differ from the whole model"):
        build_pool(tmp_path / "p", [request], progress=False)
