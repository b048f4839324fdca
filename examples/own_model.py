"""Your own model, end to end: a residual CNN defined and trained here on real images, its
structured variants measured by your own ``evaluate``, stitched variants estimated from those
measurements, a plan, a simulated comparison against the baselines, and a short real run.

The model is an ordinary ``nn.Module`` whose top-level children (a stem, two residual stages and
a head) run one after the other; nothing about it is known to SparseLoom in advance. Structured
pruning goes through torch-pruning's dependency graph, so the stages' inner channels shrink while
every block keeps its interface. Accuracy is the top-1 on the 30% of scikit-learn's digits the
model never trained on, computed by the ``top1`` function below: SparseLoom calls it on each
variant it measures.

Blocks run in torch eager mode on the host CPU (``executor: torch``), as in two_models.py, so a
cold cache costs no TVM compiles. All simulated figures are modelled from the block latencies
measured here; the last table is measured.

    python examples/own_model.py --duration 5
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import sparseloom as sl
from scheduler import registry
from scheduler.routes import pareto_routes
from sparseloom.sim import compare_workload, make_arrivals
from sparseloom.sim.report import format_table
from sparseloom.workload import Poisson

ROOT = Path(__file__).resolve().parents[1]


class Residual(nn.Module):
    """Two 3x3 convolutions and a skip connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class OwnResNet(nn.Module):
    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.stage1 = nn.Sequential(Residual(c), Residual(c))
        self.stage2 = nn.Sequential(Residual(c), Residual(c))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(self.stem(x))))


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digit images (8x8), split 70/30 with a fixed seed."""
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.7 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def train(epochs: int = 8) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model trained on the 70% split; the held-out images and labels."""
    torch.manual_seed(0)
    xtr, ytr, xte, yte = data()
    net = OwnResNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(ytr) / 64)
    # Annealed to zero: the last steps settle the weights and the norms' statistics, so the result
    # does not hang on where the final step of a constant rate happened to land.
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        for i in range(0, len(ytr), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[i:i + 64]), ytr[i:i + 64]).backward()
            opt.step()
            schedule.step()
    return net.eval(), xte, yte


def main(duration_s: float = 5.0, cache_dir: Path | None = None, progress: bool = True) -> dict[str, object]:
    t0 = time.perf_counter()
    net, xte, yte = train()

    def top1(module: nn.Module) -> float:
        """Your metric on your data: held-out top-1, higher is better, in [0, 1]."""
        return float((module(xte).argmax(1) == yte).float().mean())

    dense = top1(net)
    print(f"trained OwnResNet in {time.perf_counter() - t0:.1f} s (measured): held-out top-1 {dense:.3f}")
    soc = sl.SoC.load(ROOT / "workloads" / "socs" / "host.yaml")
    soc = soc.model_copy(update={"processors": tuple(p.model_copy(update={"executor": "torch"}) for p in soc.processors)})
    # Accuracy: at most four points under the dense model; latency: 10 ms a request.
    slo = sl.SLO(latency_ms=10.0, min_accuracy=math.floor((dense - 0.04) * 100) / 100)
    with sl.Pipeline(soc, memory_budget="256MB", cache_dir=cache_dir, progress=progress) as pipe:
        pipe.add_task("digits", model=net, slo=slo, rate_hz=100, partition=["stem", "stage1", "stage2"],
                      example_input=xte[:1], variants=[{"pattern": "structured", "levels": [0.125, 0.25, 0.5]}],
                      evaluate=top1)
        plan = pipe.build()
        assembled = pipe.assembled
        (model,) = assembled.accuracy
        terms = assembled.accuracy[model]
        pool = assembled.pool
        print(f"\nvariants of {model}, measured by top1 on the held-out images:")
        for variant in pool.variants(model):
            digests = tuple(pool.block(model, p, variant).digest for p in range(pool.positions(model)))
            flops = sum(pool.block(model, p, variant).flops for p in range(pool.positions(model)))
            print(f"  {variant:<16} top-1 {terms.measured[digests]:.3f}  {flops / 1e6:6.2f} MFLOP")
        per_position = [len({b.variant for b in pool.blocks(model) if b.position == p})
                        for p in range(pool.positions(model))]
        print(f"stitched variants: {math.prod(per_position)}, of which {len(terms.measured)} measured; "
              f"the rest estimated ({terms.form} terms)")
        print("\nplan (the served variant's accuracy measured by top1):")
        print(plan.describe())
        # The stitched variants that meet the accuracy SLO, fastest first (latencies: the profile's,
        # measured on this host; accuracy: measured or estimated from the measurements).
        (task,) = assembled.problem.tasks
        front = pareto_routes(assembled.problem, task)
        print("\nlatency/accuracy front of the variants meeting the accuracy SLO:")
        for r in front:
            print(f"  {r.latency_ms:6.3f} ms  top-1 {r.accuracy:.3f}  {'+'.join(r.variants)}")
        # The same workload in the simulator, against single-variant and adaptive baselines.
        work = pipe.workload()
        assert work.scenario is not None
        work = work.model_copy(update={"scenario": work.scenario.model_copy(update={"duration_s": 5.0,
                                                                                   "warmup_s": 0.5, "seeds": 2})})
        names = ("sparseloom", "sv-ao-np", "sv-lo-np", "av-np")
        comparison = compare_workload(work, assembled.problem, [registry.create(n) for n in names],
                                      progress=progress)
        print("\nsimulated (modelled from block latencies measured on this host):")
        print(format_table(comparison))

        # A short real run: held-out images as a Poisson stream in real time.
        times, _ = make_arrivals({"digits": Poisson(process="poisson", rate_hz=100)}, duration_s, seed=0).merged(
            ["digits"])
        start, futures = time.perf_counter(), []
        for i, t_ms in enumerate(times.tolist()):
            while (now := time.perf_counter() - start) < t_ms / 1000.0:
                time.sleep(min(0.005, t_ms / 1000.0 - now))
            futures.append(pipe.submit("digits", xte[i % len(xte)].unsqueeze(0)))
        outputs = [f.result(timeout=30) if f.exception(timeout=30) is None else None for f in futures]
        served = [(o, int(yte[i % len(yte)])) for i, o in enumerate(outputs) if o is not None]
        correct = float(np.mean([int(o.argmax()) == y for o, y in served])) if served else float("nan")
        stats = pipe.stats()
        print(f"\nreal run on this host ({duration_s:g} s, measured): top-1 of the served answers {correct:.3f}")
        print(stats.describe())
    return {"dense": dense, "terms": terms, "plan": plan, "comparison": comparison, "stats": stats,
            "served_top1": correct}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of real requests (default 5)")
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default: ~/.cache/sparseloom)")
    args = parser.parse_args()
    main(args.duration, args.cache)
