"""Two real models at once on this host under SLOs, an SLO change mid-run, live statistics.

digits_cnn (trained here on scikit-learn's digits) classifies real held-out
digit images; minilm (the pre-trained all-MiniLM-L6-v2) embeds real sentences.
Requests arrive as Poisson streams in real time; halfway through, the text
task's latency SLO tightens and the pipeline switches its stitched variant live.

By default the host CPU runs blocks in torch eager mode (``executor: torch``):
compiling every block through TVM (about a second each) would not fit the
one-minute budget of this example on a cold cache. ``--tvm`` keeps the SoC's
TVM executor. The first run builds the pool and profile (cached afterwards).

    python examples/two_models.py --duration 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import sparseloom as sl
from sparseloom.runtime.inputs import fit
from sparseloom.sim import make_arrivals
from sparseloom.workload import Poisson
from stitching.zoo import load as zoo_load
from stitching.zoo import minilm

ROOT = Path(__file__).resolve().parents[1]


def main(duration_s: float = 20.0, cache_dir: Path | None = None, tvm: bool = False, every_s: float = 2.0,
         progress: bool = True) -> sl.RuntimeStats:
    soc = sl.SoC.load(ROOT / "workloads" / "socs" / "host.yaml")
    if not tvm:
        soc = soc.model_copy(
            update={"processors": tuple(p.model_copy(update={"executor": "torch"}) for p in soc.processors)}
        )
    import torch

    digits = torch.from_numpy((load_digits().images[-200:] / 16.0).astype(np.float32))[:, None]
    with sl.Pipeline(soc, memory_budget="512MB", cache_dir=cache_dir, progress=progress) as pipe:
        structured = [{"pattern": "structured", "levels": [0.5]}]
        pipe.add_task("digits", model="digits_cnn", slo=sl.SLO(latency_ms=10, min_accuracy=0.9), rate_hz=40,
                      partition=2, variants=structured)
        pipe.add_task("text", model="minilm", slo=sl.SLO(latency_ms=60, min_accuracy=0.8), rate_hz=8,
                      partition=2, variants=structured)
        print(pipe.build().describe())
        example = zoo_load("minilm", cache_dir).example_inputs
        ids, mask = minilm.encode(minilm.sentences(32))
        sentences = [(fit(ids[i : i + 1], example[0]), fit(mask[i : i + 1], example[1])) for i in range(ids.shape[0])]

        rates = {"digits": Poisson(process="poisson", rate_hz=40), "text": Poisson(process="poisson", rate_hz=8)}
        times, tasks = make_arrivals(rates, duration_s, seed=0).merged(["digits", "text"])
        start = time.perf_counter()
        next_print, switched, futures = every_s, False, []
        for i, (t_ms, k) in enumerate(zip(times.tolist(), tasks.tolist())):
            while (now := time.perf_counter() - start) < t_ms / 1000.0:
                time.sleep(min(0.01, t_ms / 1000.0 - now))
            if not switched and now >= duration_s / 2:
                print(f"t={now:.1f}s: text SLO 60 ms -> 25 ms")
                pipe.set_slo("text", latency_ms=25)
                switched = True
            if now >= next_print:
                print(pipe.stats().describe())
                next_print += every_s
            if k == 0:
                futures.append(pipe.submit("digits", digits[i % len(digits)].unsqueeze(0)))
            else:
                futures.append(pipe.submit("text", *sentences[i % len(sentences)]))
        for f in futures:
            f.exception(timeout=30)  # a rejected request (overload) counts as a violation in the stats
        stats = pipe.stats()
        print("final:")
        print(stats.describe())
    return stats


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of requests (default 20)")
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default: ~/.cache/sparseloom)")
    parser.add_argument("--tvm", action="store_true", help="run blocks through TVM instead of torch eager")
    args = parser.parse_args()
    main(args.duration, args.cache, args.tvm)
