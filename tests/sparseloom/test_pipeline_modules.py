"""The Python API with a user's own torch module: partitioned, pooled, profiled, planned and run for real."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import sparseloom as sl


class TinyNet(nn.Module):
    """A user's model: top-level children that run one after the other."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(32, 32)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))


class Gate(nn.Module):
    """Control flow that depends on the data: torch.export cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x - 1


class Reordered(nn.Module):
    """Children declared in another order than forward runs them: their chain is not the model."""

    def __init__(self) -> None:
        super().__init__()
        self.last = nn.Linear(8, 8)
        self.first = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(x)))


@pytest.fixture
def soc(repo_root: Path) -> sl.SoC:
    return sl.SoC.load(repo_root / "workloads" / "socs" / "host.yaml")


def test_user_module_runs_end_to_end_with_torchs_outputs(soc: sl.SoC, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    with sl.Pipeline(soc, memory_budget="64MB", cache_dir=tmp_path, progress=False) as pipe:
        pipe.add_task("tiny", model=net, slo=sl.SLO(latency_ms=50), rate_hz=20, partition=2, variants=[],
                      example_input=torch.zeros(1, 16))
        plan = pipe.build()
        assert len(plan.routes["tiny"].processors) == 2  # two blocks, each compiled through TVM
        xs = torch.randn(6, 1, 16)
        outs = [pipe.submit("tiny", x).result(timeout=60) for x in xs]
        stats = pipe.stats()
    with torch.no_grad():
        for x, out in zip(xs, outs):
            torch.testing.assert_close(out, net(x), rtol=1e-4, atol=1e-5)
    assert stats.per_task["tiny"].completed == 6 and stats.errors == 0
    # The profile measured the module's blocks on this host (same digests as the plan's route).
    entries = [e for e in pipe.assembled.profile.entries if e.digest in plan.routes["tiny"].digests]
    assert len(entries) == 2 and all(e.source == "measured" for e in entries)


def test_unpartitionable_modules_raise_input_error_naming_the_task(soc: sl.SoC, tmp_path: Path) -> None:
    pipe = sl.Pipeline(soc, cache_dir=tmp_path, progress=False)
    slo = sl.SLO(latency_ms=5)
    with pytest.raises(sl.InputError, match=r"add_task\('flat'\)\.model: expected a torch.nn.Module whose "
                       r"top-level children.*no child modules"):
        pipe.add_task("flat", model=nn.Linear(4, 4), slo=slo, input_shape=(1, 4))
    with pytest.raises(sl.InputError, match=r"add_task\('deep'\)\.model: .*cut into 9 blocks.*cannot cut 5 units into 9"):
        pipe.add_task("deep", model=TinyNet(), slo=slo, input_shape=(1, 16), partition=9)
    with pytest.raises(sl.InputError, match=r"add_task\('gated'\)\.model: .*the block of 1 cannot be traced by "
                       r"torch.export"):
        pipe.add_task("gated", model=nn.Sequential(nn.Linear(4, 4), Gate()).eval(), slo=slo,
                      input_shape=(1, 4), partition=["0"])
    with pytest.raises(sl.InputError, match=r"add_task\('skip'\)\.model: .*chained blocks differ from the whole model"):
        pipe.add_task("skip", model=Reordered(), slo=slo, input_shape=(1, 8), partition=2)
    with pytest.raises(sl.InputError, match=r"add_task\('shape'\)\.input_shape"):
        pipe.add_task("shape", model=TinyNet(), slo=slo)
    assert pipe.tasks == ()  # nothing half-added
