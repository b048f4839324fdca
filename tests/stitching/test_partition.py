"""Partition: balanced and named cuts, and chained blocks that reproduce the whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stitching import zoo
from stitching.partition import (
    BaseModel,
    balanced_cut,
    boundary_cut,
    check_chain,
    cut_model,
    split,
)
from stitching.pool import Pool
from stitching.zoo import minilm


def test_balanced_cut_minimises_the_largest_block() -> None:
    assert balanced_cut([1, 1, 1, 1, 4], 2).ranges == ((0, 4), (4, 5))
    assert balanced_cut([5, 1, 1, 1, 1, 1], 3).ranges[0] == (0, 1)
    with pytest.raises(ValueError, match="cannot cut 3 units into 4"):
        balanced_cut([1, 2, 3], 4)


def test_boundary_cut_cuts_after_named_units() -> None:
    names = ["a", "b", "c", "d"]
    assert boundary_cut(names, ["a", "c"]).ranges == ((0, 1), (1, 3), (3, 4))
    with pytest.raises(ValueError, match="unknown boundary unit"):
        boundary_cut(names, ["x"])
    with pytest.raises(ValueError, match="model order"):
        boundary_cut(names, ["c", "a"])


def test_digits_model_is_trained_and_cached(digits_base: BaseModel, cache_dir: Path) -> None:
    ev = zoo.evaluator("digits_cnn", digits_base, cache_dir)
    assert ev is not None and ev.size == 540
    assert ev.score(digits_base.whole.run(*ev.inputs)) > 0.95
    assert (cache_dir / "zoo" / "digits_cnn-v1.safetensors").is_file()
    again = zoo.load("digits_cnn", cache_dir)  # from the cache: identical weights
    assert all(torch.equal(a, b) for a, b in zip(again.whole.state_dict().values(), digits_base.whole.state_dict().values()))


def test_chained_pool_blocks_equal_the_whole_model(digits_pool: Pool, digits_base: BaseModel) -> None:
    dense = [digits_pool.load_module(b.digest) for b in sorted(digits_pool.blocks(variant="dense"), key=lambda b: b.position)]
    assert check_chain(digits_base, dense) < 1e-5
    assert digits_pool.model_info("digits_cnn")["chain_max_abs_diff"] == 0.0


def test_chain_check_catches_a_wrong_block(digits_base: BaseModel, digits_pool: Pool) -> None:
    blocks = [digits_pool.load_module(digits_pool.block("digits_cnn", p, "dense").digest) for p in range(4)]
    blocks[1] = digits_pool.load_module(digits_pool.block("digits_cnn", 1, "unstructured-0.9").digest)
    with pytest.raises(ValueError, match="differ from the whole model"):
        check_chain(digits_base, blocks)


def test_minilm_is_the_real_pretrained_encoder(cache_dir: Path) -> None:
    base = zoo.load("minilm", cache_dir)
    ids, mask = minilm.encode(["A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply."])
    emb = base.whole.run(ids, mask)[0]
    sims = emb @ emb.T
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(sims[0, 1].detach()) > 0.5 > float(sims[0, 2].detach())
    cut = cut_model(base, blocks=4)
    assert len(cut.ranges) == 4
    assert check_chain(base, split(base, cut)) < 1e-5
    ev = zoo.evaluator("minilm", base, cache_dir, limit=8)
    assert ev is not None and ev.size == 8 and abs(ev.score(base.whole.run(*ev.inputs)) - 1.0) < 1e-5


def test_profiling_models_have_no_accuracy() -> None:
    assert set(zoo.names()) == {"digits_cnn", "digits_resnet", "digits_resnet18", "minilm", "resnet50", "bert_base", "vit_s", "wav2vec2_base"}
    for name in ("resnet50", "bert_base", "vit_s", "wav2vec2_base"):
        assert zoo.entry(name).accuracy_known is False
        assert zoo.entry(name).make_evaluator is None


def test_a_profiling_model_cuts_into_chaining_blocks(cache_dir: Path) -> None:
    base = zoo.load("vit_s", cache_dir)
    assert base.example_inputs[0].shape == (1, 3, 112, 112)
    cut = cut_model(base, blocks=4)
    flops = base.unit_flops()
    sizes = [sum(flops[a:b]) for a, b in cut.ranges]
    assert max(sizes) <= 1.5 * sum(flops) / 4  # balanced
    assert check_chain(base, split(base, cut), atol=1e-4) < 1e-4
