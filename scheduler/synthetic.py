"""Seeded synthetic planning problems for tests and benchmarks (all numbers modelled, not measured).

Tasks that share a base model share block digests, as multi-task sparse models do, so the
memory term (a digest counts once) is exercised.
"""

from __future__ import annotations

import random

from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec

_KINDS = ("cpu", "gpu", "dsp", "npu")
# Per processor kind: relative speed, and which variant kinds it accelerates (extra speedup).
_SPEED = {"cpu": 1.0, "gpu": 2.5, "dsp": 1.8, "npu": 4.0}
_ACCEL = {
    "cpu": ("structured",),
    "gpu": ("structured", "2:4"),
    "dsp": ("int8", "structured"),
    "npu": ("int8",),
}
_PATTERNS = ("dense", "structured", "unstructured", "2:4", "int8")


def random_problem(
    seed: int,
    tasks: int = 2,
    positions: int = 2,
    variants: int = 2,
    processors: int = 2,
    load: float = 0.5,
    slo_tightness: float = 1.5,
    memory_tightness: float = 0.7,
) -> Problem:
    """A random but plausible problem.

    ``load`` scales request rates (roughly the utilisation if every block ran on the CPU);
    ``slo_tightness`` multiplies the fastest dense latency to get each latency SLO;
    ``memory_tightness`` is the budget as a fraction of all blocks' memory.
    """
    rng = random.Random(seed)
    procs = tuple(
        ProcessorInfo(f"{_KINDS[i % 4]}{i // 4 or ''}", _KINDS[i % 4], 0.8)
        for i in range(processors)
    )
    models = max(1, (tasks + 1) // 2)
    # Per model: variant list (pattern, level) and per position block templates.
    model_variants: list[list[tuple[str, float]]] = []
    for _ in range(models):
        vs = [("dense", 0.0)]
        while len(vs) < variants:
            pat = rng.choice(_PATTERNS[1:])
            level = round(rng.uniform(0.3, 0.95), 2)
            if (pat, level) not in vs:
                vs.append((pat, level))
        model_variants.append(vs)
    task_specs: list[TaskSpec] = []
    dense_ms_total = 0.0
    for ti in range(tasks):
        m = ti % models
        mrng = random.Random(seed * 1000 + m)
        pos_opts: list[tuple[Block, ...]] = []
        dense_ms = 0.0
        for p in range(positions):
            base_ms = mrng.uniform(1.0, 5.0)
            base_mb = mrng.uniform(2.0, 20.0)
            opts = []
            for vi, (pat, level) in enumerate(model_variants[m]):
                reduction = 0.0 if pat == "dense" else level
                lat: dict[str, float] = {}
                for k in procs:
                    if k.kind == "npu" and pat not in ("dense", "int8"):
                        continue  # the NPU runs only dense or int8 blocks
                    speed = _SPEED[k.kind]
                    if pat in _ACCEL[k.kind]:
                        speed *= 1.0 / max(0.1, 1.0 - 0.8 * reduction)
                    elif pat == "int8":
                        speed *= 1.3
                    lat[k.name] = round(base_ms / speed * mrng.uniform(0.9, 1.1), 4)
                mb = base_mb * (
                    0.25
                    if pat == "int8"
                    else (1.0 - 0.5 * reduction if pat != "dense" else 1.0)
                )
                delta = (
                    0.0
                    if pat == "dense"
                    else -round(mrng.uniform(0.0, 0.03) * (0.5 + reduction), 5)
                )
                opts.append(
                    Block(
                        f"{pat}-{level}" if pat != "dense" else "dense",
                        f"m{m}p{p}v{vi}",
                        round(mb, 3),
                        lat,
                        delta,
                    )
                )
            pos_opts.append(tuple(opts))
            dense_ms += base_ms
        dense_ms_total += dense_ms
        fastest_dense = sum(
            min(o.latency_ms.values()) for o in (ps[0] for ps in pos_opts)
        )
        task_specs.append(
            TaskSpec(
                name=f"task{ti}",
                model=f"model{m}",
                latency_slo_ms=round(
                    fastest_dense * slo_tightness * rng.uniform(0.8, 1.2), 3
                ),
                min_accuracy=round(0.9 - rng.uniform(0.0, 0.03) * positions, 4),
                rate_hz=0.0,
                positions=tuple(pos_opts),
                output_mb=tuple(
                    round(rng.uniform(0.1, 2.0), 3) for _ in range(positions)
                ),
                base_accuracy=0.9,
            )
        )
    # Rates: share ``load`` of total CPU-time capacity evenly across tasks.
    rate = load * 1000.0 / max(dense_ms_total, 1e-9)
    task_specs = [
        TaskSpec(
            t.name,
            t.model,
            t.latency_slo_ms,
            t.min_accuracy,
            round(rate * rng.uniform(0.5, 1.5), 4),
            t.positions,
            t.output_mb,
            t.base_accuracy,
        )
        for t in task_specs
    ]
    total_mb = sum(
        max(o.memory_mb for o in pos)
        for m in range(models)
        for pos in next(t.positions for t in task_specs if t.model == f"model{m}")
    )
    return Problem(
        tasks=tuple(task_specs),
        processors=procs,
        memory_budget_mb=round(total_mb * memory_tightness, 3),
        transfer_latency_ms=0.2,
        transfer_mb_per_ms=2.0,
        storage_mb_per_ms=50.0,
        transitions={
            a.name: {b.name: float(rng.randint(0, 5)) for b in task_specs if b is not a}
            for a in task_specs
        },
    )
