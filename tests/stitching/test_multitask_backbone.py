"""The ResNet backbone of the multi-task study: tiles view its convs, masks run, each head's norm
restores the dense channel statistics. On the untrained zoo model, so no training runs here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stitching.multitask.backbone import NORM_CALIBRATION, ResNetBackbone, _channel_stats, _convs, layer_grids
from stitching.multitask.masks import independent_mask, tile_importance
from stitching.multitask.heads import evaluate_heads, evaluate_mask, masked_weights
from stitching.multitask.tiles import assemble, split_tiles
from stitching.partition import BlockModule
from stitching.zoo import digits_resnet


@pytest.fixture(scope="module")
def backbone() -> ResNetBackbone:
    base = digits_resnet.fold(digits_resnet.fresh())
    return ResNetBackbone.from_units(BlockModule(base.units[:-1]))


def test_tiles_cut_every_conv_and_put_it_back(backbone: ResNetBackbone) -> None:
    convs = _convs(backbone.module)
    assert set(backbone.weights) == set(convs)
    for name, conv in convs.items():
        assert backbone.weights[name].shape == (conv.weight.shape[0], conv.weight[0].numel())
    g = layer_grids(backbone, backbone.default_tile_size)
    back = assemble(g, split_tiles(backbone.weights, backbone.default_tile_size))
    for name, w in backbone.weights.items():
        np.testing.assert_array_equal(back[name], w)


def test_dense_features_are_the_modules_and_masks_change_them(backbone: ResNetBackbone) -> None:
    split = backbone.split()
    x = split.x_test[:8]
    with torch.no_grad():
        expected = backbone.module(torch.from_numpy(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(backbone.features(backbone.weights, None, x), expected, rtol=1e-5, atol=1e-6)
    g = layer_grids(backbone, backbone.default_tile_size)
    mask = frozenset(k for k in g["units.8.conv2"].tile_keys()[::2])  # half of one layer's tiles
    keep = frozenset(k for n, gr in g.items() if n != "units.8.conv2" for k in gr.tile_keys()) | mask
    w = masked_weights(backbone.weights, keep, backbone.default_tile_size)
    assert not np.allclose(backbone.features(w, None, x), expected)
    # The module's own weights are back in place after each pass.
    np.testing.assert_allclose(backbone.features(backbone.weights, None, x), expected, rtol=1e-5, atol=1e-6)


def test_a_heads_norm_restores_the_dense_channel_statistics(backbone: ResNetBackbone) -> None:
    split = backbone.split()
    g = layer_grids(backbone, backbone.default_tile_size)
    scores = tile_importance({n: np.abs(w) for n, w in backbone.weights.items()}, g)
    w = masked_weights(backbone.weights, independent_mask(scores, g, 0.7), backbone.default_tile_size)
    norm = backbone.specialise(w, split)
    assert norm.shape == (2, sum(c.weight.shape[0] for c in _convs(backbone.module).values()))

    def last_stats(weights: dict[str, np.ndarray], norm: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        conv = _convs(backbone.module)["units.8.conv2"]
        hook = conv.register_forward_hook(lambda _m, _i, out: seen.setdefault("s", _channel_stats(out)) and None)
        try:
            backbone.features(weights, norm, split.x_train[:NORM_CALIBRATION])
        finally:
            hook.remove()
        return seen["s"]

    dense_mean, dense_std = backbone.dense_stats["units.8.conv2"]
    raw_mean, _ = last_stats(w, None)
    fixed_mean, fixed_std = last_stats(w, norm)
    # The hook sees the conv's raw output; the norm is applied after it, so compare through the norm.
    s = slice(int(norm.shape[1] - dense_mean.shape[0]), None)
    scale, shift = torch.from_numpy(norm[0, s]), torch.from_numpy(norm[1, s])
    np.testing.assert_allclose((fixed_mean * scale + shift).numpy(), dense_mean.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose((fixed_std * scale).numpy(), dense_std.numpy(), rtol=1e-3, atol=1e-3)
    assert float((raw_mean - dense_mean).abs().max()) > 1e-3  # the mask did move them


def test_masked_accuracy_carries_the_heads_norm(backbone: ResNetBackbone) -> None:
    split = backbone.split()
    g = layer_grids(backbone, backbone.default_tile_size)
    scores = tile_importance({n: np.abs(w) for n, w in backbone.weights.items()}, g)
    result = evaluate_mask(backbone, "parity", independent_mask(scores, g, 0.5), backbone.default_tile_size, split)
    assert len(result.head) == 3 and result.head[2].shape[0] == 2
    assert len(evaluate_mask(backbone, "parity", None, backbone.default_tile_size, split).head) == 2


def test_heads_evaluated_together_match_each_evaluated_alone(backbone: ResNetBackbone) -> None:
    split = backbone.split()
    g = layer_grids(backbone, backbone.default_tile_size)
    scores = tile_importance({n: np.abs(w) for n, w in backbone.weights.items()}, g)
    for keep in (None, independent_mask(scores, g, 0.5)):
        together = evaluate_heads(backbone, ["parity", "ge5"], keep, backbone.default_tile_size, split)
        for task in ("parity", "ge5"):
            alone = evaluate_mask(backbone, task, keep, backbone.default_tile_size, split)
            assert together[task].accuracy == alone.accuracy
            for a, b in zip(together[task].head, alone.head, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
