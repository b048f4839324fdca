"""Every pruning kind keeps every unit kind's interface, and does what its name says."""

from __future__ import annotations

import pytest
import torch

from stitching.layers import QuantConv, QuantLinear
from stitching.partition import BlockModule, measure
from stitching.prune import Recipe, nm_mask, parse_recipe, prune_block
from stitching.units import (
    AudioFeatures,
    BasicBlock,
    BertEmbeddings,
    Bottleneck,
    ConvBlock,
    ConvReLU,
    ConvStem,
    FeatureProjection,
    Head,
    MeanPool,
    PatchEmbed,
    TransformerLayer,
    Unit,
)

RECIPES = [
    Recipe("structured", 0.5),
    Recipe("unstructured", 0.7),
    Recipe("2:4"),
    Recipe("block", 0.5, 4),
    Recipe("int8"),
]


def _cases() -> list[tuple[str, list[Unit], tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    return [
        ("conv_block", [ConvBlock(8, 16, 8, pool=True)], (torch.randn(2, 8, 8, 8),)),
        ("conv_stem+bottleneck", [ConvStem(3, 8), Bottleneck(8, 4, 4, 16, 2, True)], (torch.randn(2, 3, 32, 32),)),
        ("cifar_resnet", [ConvReLU(1, 8), BasicBlock(8, 8, 8), BasicBlock(8, 16, 16, 2)], (torch.randn(2, 1, 16, 16),)),
        ("head", [Head("flatten", 32, 12, 5)], (torch.randn(2, 2, 4, 4),)),
        ("bert", [BertEmbeddings(50, 16, 16), TransformerLayer(16, 4, 4, 32, masked=True), MeanPool()], (ids, mask)),
        ("vit", [PatchEmbed(3, 16, 4, 4), TransformerLayer(16, 2, 8, 32, pre_ln=True), Head("cls", 16, 0, 3, ln=True)], (torch.randn(2, 3, 8, 8),)),
        ("wav2vec2", [AudioFeatures([8, 8, 8], [4, 3, 2], [2, 2, 2]), FeatureProjection(8, 16, 4, 4)], (torch.randn(2, 64),)),
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
@pytest.mark.parametrize("case", range(7), ids=[c[0] for c in _cases()])
def test_every_pruning_kind_keeps_the_interface(recipe: Recipe, case: int) -> None:
    _, units, inputs = _cases()[case]
    dense = BlockModule(units).eval()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    pruned = prune_block(dense, recipe, inputs)
    dense_stats, dense_out = measure(dense, inputs)
    stats, out = measure(pruned, inputs)
    assert stats.inputs == dense_stats.inputs
    assert stats.outputs == dense_stats.outputs
    assert all(torch.equal(v, dense.state_dict()[k]) for k, v in before.items()), "pruning modified the dense block"
    # The pruned block still rebuilds from its unit specs and tensors alone.
    rebuilt = BlockModule.rebuild(pruned.unit_specs(), pruned.state_dict())
    again = rebuilt.run(*inputs)
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    if recipe.pattern == "structured":
        assert stats.flops < dense_stats.flops and stats.param_bytes < dense_stats.param_bytes
    elif recipe.pattern == "int8":
        assert stats.param_bytes < dense_stats.param_bytes
        assert any(isinstance(m, (QuantLinear, QuantConv)) for m in pruned.modules())
        rel = max(float((a - b).abs().max() / (b.abs().max() + 1e-6)) for a, b in zip(out, dense_out) if a.is_floating_point())
        assert rel < 0.1
    else:
        assert stats.nonzero_fraction < 0.9 and stats.effective_flops < dense_stats.flops


def test_structured_really_shrinks_heads_and_ffn() -> None:
    torch.manual_seed(0)
    layer = TransformerLayer(16, 4, 4, 32).eval()
    x = torch.randn(2, 5, 16)
    shrunk = layer.structured(0.5, (x,))
    assert shrunk is not None
    assert shrunk.config["heads"] == 2 and shrunk.config["ffn"] == 16
    assert shrunk.query.weight.shape == (8, 16) and shrunk.ffn_in.weight.shape == (16, 16)  # type: ignore[union-attr]
    # Whole heads go, the same ones from query, key and value: the kept rows are whole head slices.
    kept = {name: [int((layer.get_submodule(name).weight - row).abs().sum(1).argmin()) for row in
                   shrunk.get_submodule(name).weight] for name in ("query", "key", "value")}
    assert kept["query"] == kept["key"] == kept["value"]
    assert all(kept["query"][i] % 4 == 0 and kept["query"][i : i + 4] == list(range(kept["query"][i], kept["query"][i] + 4))
               for i in range(0, 8, 4))


def test_the_importance_norm_decides_which_channels_stay() -> None:
    # Channel 0 has the larger L1 norm, channel 1 the larger L2 norm: each norm keeps its own.
    block = ConvBlock(1, 2, 1).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        block.conv1.weight[0] = 0.3  # 9 weights of 0.3: L1 2.7, L2 0.9
        block.conv1.weight[1, 0, 1, 1] = 2.0  # one weight of 2: L1 2.0, L2 2.0
    x = (torch.randn(1, 1, 6, 6),)
    for norm, survivor in (("l1", 0), ("l2", 1)):
        shrunk = block.structured(0.5, x, norm)
        assert shrunk is not None and shrunk.config["hidden"] == 1
        assert torch.equal(shrunk.conv1.weight[0], block.conv1.weight[survivor]), norm  # type: ignore[union-attr]


def test_two_four_keeps_two_of_every_four() -> None:
    w = torch.randn(6, 12)
    mask = nm_mask(w)
    assert torch.all(mask.reshape(6, 3, 4).sum(-1) == 2)
    kept = (w.abs() * mask).reshape(6, 3, 4)
    dropped = (w.abs() * ~mask).reshape(6, 3, 4)
    assert torch.all(kept.max(-1).values >= dropped.max(-1).values)


@pytest.mark.parametrize("name", ["dense", "structured-0.3", "structured-l2-0.3", "unstructured-0.9", "2:4", "block8-0.5",
                                  "int8"])
def test_recipe_names_round_trip(name: str) -> None:
    assert parse_recipe(name).name == name


@pytest.mark.parametrize("bad", ["sparse-0.5", "structured-x", "structured-1.5", "2:4-0.5", "structured-l3-0.5",
                                 "unstructured-l2-0.5"])
def test_bad_recipe_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_recipe(bad)
