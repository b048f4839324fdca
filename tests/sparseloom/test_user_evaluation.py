"""A user's own model with the user's own evaluation: structured variants measured by ``evaluate``,
stitched variants estimated from it, and a bad ``evaluate`` refused by name with nothing recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import sparseloom as sl
from stitching.zoo.evaluate import EvaluationError, UserEvaluator
from tests.own_model import example
from tests.sparseloom.test_plan_simulate_cli import WORKLOAD as WORKLOAD_CLI

# The small torch-executor host SoC of the CLI tests (nothing to compile).
SOC = WORKLOAD_CLI.split("models:")[0]


EX = example()
DigitsResNet = EX.OwnResNet
_digits = EX.data


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Callable[[nn.Module], float]]:
    net, xte, yte = EX.train(epochs=6)

    def top1(module: nn.Module) -> float:
        """The user's metric: top-1 on the held-out 30%."""
        return float((module(xte).argmax(1) == yte).float().mean())

    return net, top1


def test_the_users_evaluate_measures_the_variants_and_the_plan_carries_that_measurement(
        trained: tuple[nn.Module, Callable[[nn.Module], float]], tmp_path: Path) -> None:
    net, top1 = trained
    dense_acc = top1(net)
    assert dense_acc > 0.85  # a real model: trained here on real images
    calls = [0]

    def evaluate(module: nn.Module) -> float:
        calls[0] += 1
        return top1(module)

    soc = sl.SoC.model_validate(yaml.safe_load(SOC)["soc"])
    with sl.Pipeline(soc, memory_budget="256MB", cache_dir=tmp_path, progress=False) as pipe:
        pipe.add_task("digits", model=net, slo=sl.SLO(latency_ms=100, min_accuracy=0.5), rate_hz=10,
                      partition=["stem", "stage1", "stage2"], example_input=torch.zeros(1, 1, 8, 8),
                      variants=[{"pattern": "structured", "levels": [0.3, 0.6]}], evaluate=evaluate)
        plan = pipe.build()
        route = plan.routes["digits"]
        terms = pipe.assembled.accuracy
    (model,) = terms
    assert terms[model].base_accuracy == pytest.approx(dense_acc)
    assert list(tmp_path.rglob("accuracy/*.json"))  # recorded, where a failed build leaves nothing
    assert calls[0] >= 3  # the dense model and each structured original at least
    # The plan's accuracy is the user's evaluate on the very blocks it serves.
    pool = pipe.assembled.pool
    chain = [pool.load_module(d) for d in route.digests]

    class Chain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in chain:
                x = block(x)
            return x

    with torch.no_grad():
        assert route.accuracy == pytest.approx(top1(Chain()), abs=1e-9)
    # The structured stages are smaller: their FLOPs dropped.
    blocks = {(b.position, b.variant): b for b in pool.blocks(model)}
    assert blocks[(1, "structured-0.6")].flops < 0.6 * blocks[(1, "dense")].flops


@pytest.mark.parametrize(("fn", "match"), [
    (lambda m: 1 / 0, "raised ZeroDivisionError"),
    (lambda m: "high", "returned 'high'; expected a number"),
    (lambda m: 1.5, "returned 1.5, outside"),
    (lambda m: float("nan"), "returned nan"),
    (lambda m: time.sleep(5.0), "took longer than its limit of 0.2 s"),
])
def test_a_bad_evaluate_is_refused_naming_the_model(fn: Callable[[nn.Module], object], match: str) -> None:
    with pytest.raises(EvaluationError, match=rf"evaluate of model 'net' .*{match}"):
        UserEvaluator(fn, "net", "test", limit_s=0.2).evaluate(nn.Identity())  # type: ignore[arg-type]


def test_a_failing_evaluate_stops_the_build_with_an_input_error_and_records_nothing(
        trained: tuple[nn.Module, Callable[[nn.Module], float]], tmp_path: Path) -> None:
    net, top1 = trained
    seen = [0]

    def flaky(module: nn.Module) -> float:
        seen[0] += 1
        if seen[0] > 2:
            raise RuntimeError("the evaluation data went away")
        return top1(module)

    soc = sl.SoC.model_validate(yaml.safe_load(SOC)["soc"])
    pipe = sl.Pipeline(soc, memory_budget="256MB", cache_dir=tmp_path, progress=False)
    pipe.add_task("digits", model=net, slo=sl.SLO(latency_ms=100), rate_hz=10, partition=2,
                  example_input=torch.zeros(1, 1, 8, 8), evaluate=flaky)
    with pytest.raises(sl.InputError, match=r"models\..*\.evaluation: .*raised RuntimeError: the evaluation data"):
        pipe.build()
    records = list(tmp_path.rglob("accuracy/*.json"))
    assert records == []
    with pytest.raises(sl.InputError, match="evaluate"):
        pipe.add_task("other", model="digits_cnn", slo=sl.SLO(latency_ms=100), evaluate=top1)
    assert np.isfinite(top1(net))


def make_net() -> nn.Module:
    torch.manual_seed(1)
    return DigitsResNet(c=8).eval()


def held_out_top1(module: nn.Module) -> float:
    _, _, xte, yte = _digits()
    return float((module(xte).argmax(1) == yte).float().mean())


WORKLOAD = SOC + """
models:
  - name: net
    module: "tests.sparseloom.test_user_evaluation:make_net"
    input_shape: [1, 1, 8, 8]
    partition: {boundaries: [stem, stage1, stage2]}
    variants: [{pattern: structured, levels: [0.5]}]
    evaluation: {module: "EVAL", limit_s: 30}
tasks:
  - {name: classify, model: net, slo: {latency_ms: 50}, arrival: {process: poisson, rate_hz: 50}}
scenario: {name: own, duration_s: 2, warmup_s: 0.5, seeds: 1, memory_budget_mb: 64, policies: [sparseloom]}
"""


def test_a_workload_names_its_evaluation_and_a_bad_one_exits_2(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from sparseloom.cli import main

    good = tmp_path / "own.yaml"
    good.write_text(WORKLOAD.replace("EVAL", "tests.sparseloom.test_user_evaluation:held_out_top1"))
    assert main(["plan", str(good), "--cache", str(tmp_path / "c"), "--no-progress", "--json"]) == 0
    task = json.loads(capsys.readouterr().out)["plan"]["tasks"]["classify"]
    assert task["accuracy"] is not None and 0.0 <= task["accuracy"] <= 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(WORKLOAD.replace("EVAL", "tests.sparseloom.test_user_evaluation:no_such_fn"))
    assert main(["plan", str(bad), "--cache", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "models[0].evaluation.module" in err and "no_such_fn" in err


def test_a_measurement_reaches_every_choice_of_the_same_blocks() -> None:
    from scheduler.problem import Block
    from sparseloom.assemble import measured_choices

    # Position 0: structured pruning left the block as it was (same digest as dense).
    positions = [(Block("dense", "a", 1.0, {"cpu": 1.0}), Block("structured-0.5", "a", 1.0, {"cpu": 1.0})),
                 (Block("dense", "b", 1.0, {"cpu": 1.0}), Block("structured-0.5", "c", 1.0, {"cpu": 0.5}))]
    got = measured_choices(positions, {("a", "c"): 0.9, ("a", "b"): 0.99})
    assert got == {(0, 1): 0.9, (1, 1): 0.9, (0, 0): 0.99, (1, 0): 0.99}
