"""Least-squares reconstruction: pruned blocks get the dense outputs back, masks stay, and its two
constants (the calibration size and the ridge) trade what they say they trade."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stitching import zoo
from stitching.partition import BaseModel, BlockModule, cut_model, split
from stitching.pool import ModelRequest, build_pool
from stitching.prune import Recipe, prune_block
from stitching.reconstruct import CALIBRATION_SIZE, reconstruct
from stitching.zoo import digits


def _error(block: BlockModule, dense: BlockModule, xs: tuple[torch.Tensor, ...]) -> float:
    """Relative error of ``block``'s output against the dense block's."""
    with torch.no_grad():
        got, want = block.run(*xs)[0], dense.run(*xs)[0]
    return float((got - want).norm() / want.norm())


def _digits_block(base: BaseModel, position: int) -> tuple[BlockModule, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """A dense block of the trained digits CNN with its inputs on training (calibration) and test images."""
    blocks = split(base, cut_model(base, 4, None))
    xtr, xte = (torch.from_numpy(a) for a in digits.data()[:2])
    calib, held = (xtr[:CALIBRATION_SIZE],), (xte,)
    with torch.no_grad():
        for b in blocks[:position]:
            calib, held = b.run(*calib), b.run(*held)
    return blocks[position], calib, held


@pytest.mark.parametrize("recipe", [Recipe("structured", 0.5), Recipe("unstructured", 0.8), Recipe("2:4")],
                         ids=lambda r: r.name)
def test_refitting_brings_held_out_outputs_back_and_keeps_the_pattern(digits_base: BaseModel, recipe: Recipe) -> None:
    dense, calib, held = _digits_block(digits_base, 1)
    pruned = prune_block(dense, recipe, (calib[0][:1],))
    fitted = reconstruct(dense, pruned, calib)
    assert _error(fitted, dense, held) < 0.7 * _error(pruned, dense, held)
    for (name, a), (_, b) in zip(pruned.state_dict().items(), fitted.state_dict().items()):
        assert a.shape == b.shape, name
        if name.endswith("weight"):
            assert torch.equal(a == 0, b == 0) or recipe.pattern == "structured", f"{name}: the mask moved"
    assert fitted.run(*held)[0].shape == dense.run(*held)[0].shape


def test_the_ridge_trades_the_calibration_fit_against_the_pruned_weights(digits_base: BaseModel) -> None:
    dense, calib, _ = _digits_block(digits_base, 1)
    pruned = prune_block(dense, Recipe("unstructured", 0.8), (calib[0][:1],))
    errors, moved = [], []
    for ridge in (0.0, 1e-3, 1e3):
        fitted = reconstruct(dense, pruned, calib, ridge=ridge)
        errors.append(_error(fitted, dense, calib))
        moved.append(sum(float((a - b).detach().norm()) for a, b in zip(pruned.parameters(), fitted.parameters())))
    # Layers are refitted one after another, so plain least squares is not always the best fit of the
    # block's output: the ridge's axis is the fit against staying at the pruned weights.
    assert max(errors[0], errors[1]) < 0.5 * errors[2] and errors[2] <= _error(pruned, dense, calib) + 1e-6
    assert min(moved[0], moved[1]) > 10 * moved[2]


def test_fewer_calibration_inputs_fit_themselves_better_and_held_out_data_worse(digits_base: BaseModel) -> None:
    dense, calib, held = _digits_block(digits_base, 1)
    pruned = prune_block(dense, Recipe("structured", 0.5), (calib[0][:1],))
    few = (calib[0][:4],)
    small, full = reconstruct(dense, pruned, few, ridge=0.0), reconstruct(dense, pruned, calib, ridge=0.0)
    assert _error(small, dense, few) < _error(full, dense, few)
    assert _error(small, dense, held) > _error(full, dense, held)


def test_the_pool_refits_a_zoo_model_with_calibration_data_and_records_how(cache_dir: Path, tmp_path: Path) -> None:
    request = ModelRequest("digits_cnn", "digits_cnn", 4, None, (Recipe("structured", 0.7), Recipe("int8")))
    pool = build_pool(tmp_path / "pool", [request], cache_dir, progress=False)
    info = pool.model_info("digits_cnn")
    assert info["reconstruction"].startswith("least-squares")
    base = zoo.load("digits_cnn", cache_dir)
    evaluator = zoo.evaluator("digits_cnn", base, cache_dir)
    assert evaluator is not None
    served = BlockModule([u for p in range(4) for u in pool.load_module(pool.block("digits_cnn", p, "structured-0.7").digest).units])
    plain = prune_block(base.whole, Recipe("structured", 0.7), base.example_inputs)
    with torch.no_grad():
        refit_acc, plain_acc = evaluator.score(served.run(*evaluator.inputs)), evaluator.score(plain.run(*evaluator.inputs))
    assert refit_acc > plain_acc + 0.05
    # MiniLM has no calibration data: its entry says so and the pool records no reconstruction.
    assert zoo.entry("minilm").make_calibration is None


def test_refitted_blocks_do_not_depend_on_the_callers_threads_or_layout(cache_dir: Path, tmp_path: Path) -> None:
    # Their weights are hashed into the digests: two builds must store the same blocks.
    request = ModelRequest("digits_cnn", "digits_cnn", 4, None, (Recipe("unstructured", 0.9),))
    threads = torch.get_num_threads()
    try:
        digests = []
        for n in (2, 1):
            torch.set_num_threads(n)
            pool = build_pool(tmp_path / f"pool{n}", [request], cache_dir, progress=False)
            digests.append(sorted(b.digest for b in pool.blocks()))
    finally:
        torch.set_num_threads(threads)
    assert digests[0] == digests[1]
    dense, calib, _ = _digits_block(zoo.load("digits_cnn", cache_dir), 1)
    pruned = prune_block(dense, Recipe("unstructured", 0.9), (calib[0][:1],))
    odd = (calib[0].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),)  # same values, channels-last strides
    a, b = reconstruct(dense, pruned, calib), reconstruct(dense, pruned, odd)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
