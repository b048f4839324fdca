"""The ResNet-18-shaped zoo model: its units fold their norms exactly, and its training learns."""

from __future__ import annotations

import torch

from stitching.units import BasicBlock, ConvReLU
from stitching.zoo import digits_resnet


def test_folding_the_norms_keeps_the_function() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 8, 8)
    for unit in (ConvReLU(4, 6, bn=True), BasicBlock(4, 5, 6, stride=2, bn=True), BasicBlock(4, 5, 4, bn=True)):
        # Non-trivial statistics, as after training: a fold that ignored them would differ.
        for m in unit.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
        unit.eval()
        folded = unit.folded()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert folded.config["bn"] is False
        assert torch.allclose(unit(x)[0], folded(x)[0], atol=1e-5)


def test_the_model_has_resnet18s_shape_and_its_training_learns() -> None:
    training = digits_resnet.Training(epochs=4, limit=256)
    base = digits_resnet.fresh()
    blocks = [u for u in base.units if isinstance(u, BasicBlock)]
    assert len(blocks) == 8 and [b.config["out_ch"] for b in blocks[::2]] == list(digits_resnet.WIDTHS["digits_resnet"])
    assert [b.config["stride"] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    losses = digits_resnet.train(base, training)
    assert losses[-1] < 0.92 * losses[0]  # seeded: 2.08 against 2.39 here
    served = digits_resnet.fold(base)
    evaluator = digits_resnet.evaluator(None, served, 64)  # type: ignore[arg-type]
    assert evaluator.inputs[0].shape == (64, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(base.whole.run(*evaluator.inputs)[0], served.whole.run(*evaluator.inputs)[0], atol=1e-4)
