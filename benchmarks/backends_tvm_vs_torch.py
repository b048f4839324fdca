"""TVM vs torch eager on representative blocks, cost-model error, and stitched-variant latency error.

Prints, per block (digits-like CNN, MiniLM layers, and the first encoder layer of the
zoo's BERT-base, ViT-S and wav2vec2-base shapes; dense and structured-50), at each
thread count:
torch eager latency, TVM latency untuned (SparseLoom's CPU schedule rules)
and with the tuning database (MetaSchedule records where they beat the
rules), their ratios to torch, and compile times. The headline is the
time-weighted ratio (sum of TVM times / sum of torch times) per thread count,
with the worst MiniLM layer and the tuning cost in minutes. Then the roofline model's
leave-one-out error on the host, and the error of the stitched-variant
latency estimate (sum of blocks + transfers) against measured chained runs.
All latencies are medians over interleaved repeats after warm-up, measured
here. Usage:

    PYTHONPATH=. python benchmarks/backends_tvm_vs_torch.py [--threads 1,2] [--tune-trials 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from backends_blocks import benchmark_blocks, zoo_transformer_blocks

from backends.base import CompileOptions, Runner
from backends.block import BlockSpec, make_block
from backends.cache import CompileCache
from backends.identity import tuning_state
from backends.compile import (
    choose_schedules,
    import_block,
    make_target,
    read_choices,
    tune,
)
from backends.costmodel import (
    Step,
    calibrate,
    leave_one_out,
    roofline_ms,
    stitched_latency_ms,
)
from backends.processor import ProcessorSpec, host_cpu
from backends.profiler import measure_handoff_ms, sample_of, time_ms
from backends.tvm_backends import backend_for, runner_for

ROOT = Path(__file__).resolve().parents[1]


def interleaved_ms(runners: dict[str, tuple[Runner, tuple[torch.Tensor, ...]]], rounds: int, per_round: int,
                   stat: str = "median") -> dict[str, float]:
    """Latency of each runner from alternating rounds (so load changes hit all alike): the median
    or the minimum over rounds of each round's median; the minimum resists other jobs' interference."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for run, inputs in runners.values():
        for _ in range(3):
            run(*inputs)
    for _ in range(rounds):
        for name, (run, inputs) in runners.items():
            samples[name].append(time_ms(lambda r=run, x=inputs: r(*x), repeats=per_round, warmup=1).median_ms)
    pick = np.min if stat == "min" else np.median
    return {k: float(pick(v)) for k, v in samples.items()}


def mlp_blocks() -> list[BlockSpec]:
    """Extra shapes for calibrating the cost model (linear layers of varied size)."""
    torch.manual_seed(1)
    out = []
    for rows, width in ((8, 64), (32, 256), (128, 384), (64, 1024), (128, 768), (16, 1536)):
        mod = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, width // 2))
        out.append(make_block(f"mlp.{rows}x{width}", mod, (torch.randn(rows, width),)))
    return out


def compare(threads: int, blocks: list[BlockSpec], args: argparse.Namespace) -> list[dict[str, object]]:
    """Torch eager vs TVM (rules, and rules + database) per block at ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    host = host_cpu("host-tvm", threads=threads)
    eager = host_cpu("host-torch", executor="torch", threads=threads)
    target = make_target(host.target)
    print(f"\nhost target {host.target}, {threads} thread(s); latencies are medians (ms), measured")
    print(f"{'block':34s} {'torch':>8s} {'untuned':>8s} {'tuned':>8s} {'unt/torch':>9s} {'tun/torch':>9s} "
          f"{'compile_s':>9s} {'tune_s':>7s}")
    untuned_opts = CompileOptions(cache=CompileCache(args.cache))
    tuned_opts = CompileOptions(cache=CompileCache(args.cache), tuning_db=args.tuning_db)
    rows: list[dict[str, object]] = []
    for block in blocks:
        tune_s = 0.0
        if args.tune_trials > 0:
            start = time.perf_counter()
            tune(import_block(block), target, args.tuning_db, args.tune_trials)
            tune_s = time.perf_counter() - start
        if args.tuning_db.exists():
            start = time.perf_counter()
            choose_schedules(import_block(block), target, args.tuning_db)
            tune_s += time.perf_counter() - start
        plain = backend_for(host).compile(block, host, untuned_opts)
        compile_s = plain.compile_s if not plain.cache_hit else float("nan")
        tuned = backend_for(host).compile(block, host, tuned_opts)
        run_untuned = runner_for(block, host, plain)
        run_tuned = runner_for(block, host, tuned)
        run_torch = runner_for(block, eager, backend_for(eager).compile(block, eager, untuned_opts))
        torch.testing.assert_close(run_tuned(*block.example_inputs)[0], run_torch(*block.example_inputs)[0],
                                   rtol=1e-3, atol=1e-3)
        lat = interleaved_ms({"torch": (run_torch, block.example_inputs), "untuned": (run_untuned, block.example_inputs),
                              "tuned": (run_tuned, block.example_inputs)}, args.rounds, args.per_round)
        row = {"block": block.name, "threads": threads, "torch_ms": lat["torch"], "tvm_untuned_ms": lat["untuned"],
               "tvm_tuned_ms": lat["tuned"], "untuned_ratio": lat["untuned"] / lat["torch"],
               "tuned_ratio": lat["tuned"] / lat["torch"], "compile_s": compile_s,
               "tuned_compile_s": tuned.compile_s if not tuned.cache_hit else float("nan"),
               "tune_and_choose_s": tune_s, "flops": block.flops, "source": "measured"}
        rows.append(row)
        print(f"{block.name:34s} {lat['torch']:8.3f} {lat['untuned']:8.3f} {lat['tuned']:8.3f} "
              f"{row['untuned_ratio']:9.2f} {row['tuned_ratio']:9.2f} {compile_s:9.2f} {tune_s:7.1f}")
    return rows


def time_weighted(rows: list[dict[str, object]], key: str) -> float:
    """Sum of TVM times over sum of torch times: what a whole pipeline of these blocks pays."""
    return float(sum(float(r[key]) for r in rows) / sum(float(r["torch_ms"]) for r in rows))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=str, default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--tune-trials", type=int, default=0, help="MetaSchedule trials per block (0: use the stored database)")
    parser.add_argument("--tuning-db", type=Path, default=ROOT / "backends" / "tuning_db")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "backends_bench")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]

    blocks = benchmark_blocks(minilm_layers=2) + zoo_transformer_blocks()
    report: dict[str, object] = {"threads": thread_counts, "blocks": []}
    headline = []
    for threads in thread_counts:
        rows = compare(threads, blocks, args)
        report["blocks"] += rows  # type: ignore[operator]
        minilm = [r for r in rows if str(r["block"]).startswith("minilm")]
        transformers = [r for r in rows if not str(r["block"]).startswith("cnn")]
        worst = max(minilm, key=lambda r: float(r["tuned_ratio"]))  # type: ignore[arg-type]
        headline.append((threads, time_weighted(rows, "tvm_tuned_ms"), time_weighted(rows, "tvm_untuned_ms"),
                         time_weighted(transformers, "tvm_tuned_ms"), worst["block"], worst["tuned_ratio"],
                         sum(float(r["tune_and_choose_s"]) for r in rows) / 60.0))  # type: ignore[arg-type]
    print("\nheadline (measured): time-weighted ratio = sum of TVM times / sum of torch eager times")
    print(f"{'threads':>7s} {'tuned':>7s} {'untuned':>8s} {'transformers':>12s} {'worst MiniLM layer':>30s} {'tuning_min':>10s}")
    for threads, tuned_r, untuned_r, trans_r, worst_name, worst_r, tune_min in headline:
        print(f"{threads:7d} {tuned_r:7.2f} {untuned_r:8.2f} {trans_r:12.2f} {worst_name:>24s} {worst_r:5.2f} {tune_min:10.2f}")
    report["headline"] = [dict(zip(("threads", "time_weighted_tuned", "time_weighted_untuned", "time_weighted_transformers",
                                    "worst_minilm_block", "worst_minilm_ratio", "tuning_minutes"), h)) for h in headline]
    rows = [r for r in report["blocks"] if r["threads"] == thread_counts[0]]  # type: ignore[index,union-attr]
    geo = lambda key: float(np.exp(np.mean([np.log(r[key]) for r in rows])))
    print(f"geomean ratio at {thread_counts[0]} thread(s): untuned {geo('untuned_ratio'):.2f}x, tuned {geo('tuned_ratio'):.2f}x torch")
    choices = read_choices(args.tuning_db, make_target(host_cpu(threads=thread_counts[0]).target)) \
        if args.tuning_db.exists() else {}
    print(f"tuning database {args.tuning_db} ({tuning_state(args.tuning_db)}): {len(choices)} kernels timed, "
          f"{sum(1 for c in choices.values() if c['choice'] == 'database')} use MetaSchedule records, rest the rules")

    torch.set_num_threads(thread_counts[0])
    host = host_cpu("host-tvm", threads=thread_counts[0])
    eager = host_cpu("host-torch", executor="torch", threads=thread_counts[0])
    tuned_opts = CompileOptions(cache=CompileCache(args.cache), tuning_db=args.tuning_db)
    blocks = [b for b in blocks if b.name.startswith(("cnn", "minilm"))]
    # Cost model: calibrate the roofline on measured TVM (tuned) latencies; leave-one-out error.
    calib_blocks = blocks + mlp_blocks()
    calib_runs = {}
    for block in calib_blocks:
        compiled = backend_for(host).compile(block, host, tuned_opts)
        calib_runs[block.name] = (runner_for(block, host, compiled), block.example_inputs)
    calib_ms = interleaved_ms(calib_runs, args.rounds, args.per_round, stat="min")
    samples = [dataclasses.replace(sample_of(b), latency_ms=calib_ms[b.name]) for b in calib_blocks]
    loo = leave_one_out(host, samples)
    eff = calibrate(host, samples)
    print(f"cost model on host: {len(samples)} blocks (min over {args.rounds} interleaved rounds), leave-one-out MAPE {loo.mape_pct:.1f}% (max {loo.max_ape_pct:.1f}%); "
          f"calibrated compute_eff {eff.compute:.3f}, memory_eff {eff.memory:.3f}, overhead {eff.overhead_us:.1f} us")
    report["cost_model"] = {"loo_mape_pct": loo.mape_pct, "loo_max_pct": loo.max_ape_pct, "n": len(samples),
                            "compute_eff": eff.compute, "memory_eff": eff.memory, "overhead_us": eff.overhead_us,
                            "per_block_err_pct": dict(zip([b.name for b in calib_blocks], loo.errors_pct)),
                            "predicted_ms": {b.name: roofline_ms(host, s, eff) for b, s in zip(calib_blocks, samples)},
                            "samples": [dataclasses.asdict(s) for s in samples]}

    report["stitched"] = stitched_validation(blocks, host, eager, tuned_opts, args)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1, default=float))


def stitched_validation(blocks: list[BlockSpec], host: ProcessorSpec, eager: ProcessorSpec,
                        options: CompileOptions, args: argparse.Namespace) -> dict[str, object]:
    """Estimate (sum of per-block profile latencies + transfers) vs measured chained runs of stitched variants."""
    by_name = {b.name: b for b in blocks}
    chains = {"cnn": ["cnn.b0", "cnn.b1"], "minilm": ["minilm.l0", "minilm.l1"]}
    procs = {"tvm": host, "torch": eager}
    runners: dict[tuple[str, str], Runner] = {}
    for block in blocks:
        for pname, proc in procs.items():
            compiled = backend_for(proc).compile(block, proc, options)
            runners[(block.name, pname)] = runner_for(block, proc, compiled)
    # Transfer between the two host processors: measured once on a probe block, not on the chains.
    probe = make_block("probe", torch.nn.Sequential(torch.nn.Conv2d(32, 32, 1)), (torch.randn(1, 32, 4, 4),))
    probe_run = {p: runner_for(probe, proc, backend_for(proc).compile(probe, proc, options)) for p, proc in procs.items()}
    handoff = {(procs[a].name, procs[b].name): measure_handoff_ms(probe_run[a], probe_run[b], probe.example_inputs)
               for a, b in (("tvm", "torch"), ("torch", "tvm"))}
    print("measured host hand-over (probe block): " + ", ".join(f"{a}->{b} {v * 1e3:.1f} us" for (a, b), v in handoff.items()))
    results = []
    for model, positions in chains.items():
        for variants in itertools.product(("dense", "structured-50"), repeat=len(positions)):
            for placement in itertools.product(("tvm", "torch"), repeat=len(positions)):
                names = [f"{pos}.{var}" for pos, var in zip(positions, variants)]
                chain = [runners[(n, p)] for n, p in zip(names, placement)]
                hand_over = [a != b for a, b in itertools.pairwise(placement)] + [False]

                def run_chain(chain: list[Runner] = chain, moves: list[bool] = hand_over,
                              x: tuple[torch.Tensor, ...] = by_name[names[0]].example_inputs) -> tuple[torch.Tensor, ...]:
                    out = x
                    for run, move in zip(chain, moves):
                        out = run(*out)
                        if move:  # a transfer between processors: the next one reads a fresh copy
                            out = tuple(o.clone() for o in out)
                    return out

                # The per-block profile and the chained run are measured in the same interleaved
                # rounds, so both see the same machine load.
                timed = {f"solo{i}": (runners[(n, p)], by_name[n].example_inputs)
                         for i, (n, p) in enumerate(zip(names, placement))}
                timed["chain"] = (lambda *_: run_chain(), ())
                lat = interleaved_ms(timed, args.rounds, args.per_round, stat="min")
                steps = [Step(lat[f"solo{i}"], procs[pname].name, by_name[name].output_bytes())
                         for i, (name, pname) in enumerate(zip(names, placement))]
                estimate = stitched_latency_ms(steps, measured_transfer_ms=handoff)
                measured = lat["chain"]
                err = abs(estimate - measured) / measured * 100.0
                results.append({"chain": "+".join(names), "placement": "+".join(placement), "estimate_ms": estimate,
                                "measured_ms": measured, "ape_pct": err})
    mape = float(np.mean([r["ape_pct"] for r in results]))
    for model in chains:
        sub = [r for r in results if r["chain"].startswith(model)]
        print(f"stitched {model}: {len(sub)} variant x placement runs, MAPE {np.mean([r['ape_pct'] for r in sub]):.1f}% "
              f"(max {np.max([r['ape_pct'] for r in sub]):.1f}%)")
    print(f"stitched-variant latency estimate vs measured chained runs: MAPE {mape:.1f}% over {len(results)} (target <= 5%)")
    return {"mape_pct": mape, "handoff_ms": {f"{a}->{b}": v for (a, b), v in handoff.items()}, "runs": results}


if __name__ == "__main__":
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    main()
