"""User models given as ``pkg.mod:factory``: cut between top-level children, pruned, pooled, rebuilt."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from stitching.pool import ModelRequest, build_pool, verify
from stitching.prune import Recipe
from stitching.stitch import stitch
from tests.own_model import example

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


def make_resnet() -> nn.Module:
    torch.manual_seed(3)
    # The example's residual CNN: a stem, two stages of two residual blocks, a head.
    model = example().OwnResNet(c=32).eval()
    with torch.no_grad():  # trained-looking norms: the importance ranking has something to rank
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.2, 1.5)
    return model


RESNET = f"{__name__}:make_resnet"


def _chain(pool, variant: str, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    for p in range(pool.positions("resnet")):
        x = pool.load_module(pool.block("resnet", p, variant).digest)(x)
    return x


def test_structured_pruning_of_a_residual_user_model_shrinks_its_stages_and_keeps_every_interface(
        tmp_path: Path) -> None:
    request = ModelRequest("resnet", None, None, ("stem", "stage1", "stage2"),
                           (Recipe("structured", 0.5),), RESNET, (1, 1, 16, 16))
    pool = build_pool(tmp_path / "p", [request], progress=False)
    assert verify(tmp_path / "p") == []
    dense = [pool.block("resnet", p, "dense") for p in range(4)]
    half = [pool.block("resnet", p, "structured-0.5") for p in range(4)]
    # The residual stages lose about half their inner convs' weights; the stem and head, whose
    # every channel is interface, keep theirs.
    for p in (1, 2):
        assert half[p].param_bytes < 0.6 * dense[p].param_bytes
        assert half[p].flops < 0.6 * dense[p].flops
    for p in (0, 3):
        assert half[p].param_bytes == dense[p].param_bytes
    stage = pool.load_module(half[1].digest)
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 16, 32]
    # Rebuilt from the factory and the stored sizes, every variant runs and keeps the model's output shape.
    x = torch.randn(3, 1, 16, 16)
    assert _chain(pool, "structured-0.5", x).shape == (3, 10)
    assert torch.allclose(_chain(pool, "dense", x), make_resnet()(x), atol=1e-5)
    # Measured on this host: the pruned stage really runs faster (one thread; the two stages timed in
    # turn within each of 20 repeats, best of each, on an input large enough that the convolutions,
    # not per-call overhead, take the time; the FLOPs halve, so a margin of 10% leaves room for noise).
    dense_stage = pool.load_module(dense[1].digest)
    y = torch.randn(1, 32, 64, 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = {"dense": float("inf"), "half": float("inf")}
        with torch.no_grad():
            for _ in range(20):
                for name, module in (("dense", dense_stage), ("half", stage)):
                    t0 = time.perf_counter()
                    module(y)
                    best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert best["half"] < 0.9 * best["dense"], best


def test_children_without_inner_channels_stay_dense(tmp_path: Path) -> None:
    # Each child of the MLP is a single layer: all its channels are its interface.
    request = ModelRequest("mlp", None, 2, None, (Recipe("structured", 0.5),), FACTORY, (1, 8))
    pool = build_pool(tmp_path / "p", [request], progress=False)
    for p in range(2):
        assert pool.block("mlp", p, "structured-0.5").digest == pool.block("mlp", p, "dense").digest


class Untraceable(nn.Module):
    """Runs its convs without autograd, so torch-pruning's graph has nothing to follow."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.b(self.a(x))


def make_untraceable() -> nn.Module:
    return nn.Sequential(Untraceable(), nn.Flatten())


def test_a_child_torch_pruning_cannot_trace_is_refused_by_name(tmp_path: Path) -> None:
    request = ModelRequest("odd", None, 2, None, (Recipe("structured", 0.5),), f"{__name__}:make_untraceable",
                           (1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"torch-pruning cannot (trace|prune) 0 of .*make_untraceable: "):
        build_pool(tmp_path / "p", [request], progress=False)


def test_a_model_that_is_not_a_chain_of_children_is_refused(tmp_path: Path) -> None:
    request = ModelRequest("res", None, 2, None, (), f"{__name__}:make_residual", (1, 8))
    with pytest.raises(ValueError, match="differ from the whole model"):
        build_pool(tmp_path / "p", [request], progress=False)
