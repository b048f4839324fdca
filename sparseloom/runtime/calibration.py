"""Fidelity check: the same workload in the real runtime and in the simulator, and measured corrections.

The runtime replays seeded arrivals in real time; the simulator runs the same
arrivals with the same plan on the profile's numbers. Errors are reported as
the simulator's figure minus the measured one: p50 / p99 latency and
throughput in % of the measured value, the violation rate in percentage
points. The runtime also measures each (block, processor)'s service time
(block run plus hand-off wake-up); with those as the block latencies the
simulator runs again (with the measured spread of block run times as its
``latency_cv``), and the corrections can be written back into a profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from backends.processor import SoCSpec
from backends.profile import Profile, ProfileEntry
from scheduler import registry
from scheduler.problem import Problem
from sparseloom.runtime.engine import Runtime
from sparseloom.runtime.replay import replay
from sparseloom.runtime.stats import result_dict
from sparseloom.sim.engine import SLOChangeEvent
from sparseloom.sim.metrics import RunResult
from sparseloom.sim.runner import Arrivals, simulate


@dataclass(frozen=True)
class Fidelity:
    """Simulated minus measured: latency and throughput in % of measured, violation rate in points."""

    p50_error_pct: float
    p99_error_pct: float
    violation_error_points: float
    throughput_error_pct: float

    def describe(self) -> str:
        return (
            f"p50 {self.p50_error_pct:+.1f}%  p99 {self.p99_error_pct:+.1f}%  "
            f"violations {self.violation_error_points:+.2f} points  throughput {self.throughput_error_pct:+.1f}%"
        )


@dataclass(frozen=True)
class BlockCorrection:
    """A block's latency on a processor: the profile's (modelled or measured offline) and the runtime's."""

    digest: str
    processor: str
    profile_ms: float
    measured_ms: float
    samples: int

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.profile_ms if self.profile_ms > 0 else math.inf


@dataclass(frozen=True)
class Calibration:
    """A real run, its simulation before and after corrections, and the errors of each."""

    policy: str
    real: RunResult  # measured
    simulated: RunResult  # modelled from the profile
    corrected: RunResult  # modelled from the runtime's measured block latencies
    before: Fidelity
    after: Fidelity
    corrections: tuple[BlockCorrection, ...]
    # Measured spread of block run times, given to the corrected simulation as its latency_cv.
    latency_cv: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "real": result_dict(self.real, "measured"),
            "simulated": result_dict(self.simulated, "modelled (profile)"),
            "corrected": result_dict(self.corrected, "modelled (runtime-measured block latencies)"),
            "error_before": _finite(vars(self.before)),
            "error_after": _finite(vars(self.after)),
            "latency_cv": self.latency_cv,
            "corrections": [
                _finite({**vars(c), "ratio": c.ratio}) for c in self.corrections
            ],
        }


def _finite(d: Any) -> Any:
    if isinstance(d, float) and not math.isfinite(d):
        return None
    if isinstance(d, dict):
        return {k: _finite(v) for k, v in d.items()}
    return d


def _pct(sim: float, real: float) -> float:
    if not (math.isfinite(sim) and math.isfinite(real)) or real == 0:
        return math.nan
    return (sim - real) / real * 100.0


def fidelity(real: RunResult, sim: RunResult) -> Fidelity:
    """How far the simulation ``sim`` is from the measured run ``real``."""
    return Fidelity(
        p50_error_pct=_pct(sim.latency_ms.p50, real.latency_ms.p50),
        p99_error_pct=_pct(sim.latency_ms.p99, real.latency_ms.p99),
        violation_error_points=(sim.slo_violation_rate - real.slo_violation_rate) * 100.0,
        throughput_error_pct=_pct(sim.throughput_rps, real.throughput_rps),
    )


def corrected_problem(problem: Problem, corrections: Sequence[BlockCorrection]) -> Problem:
    """``problem`` with each corrected (block, processor) latency replaced by the measured one."""
    fix = {(c.digest, c.processor): c.measured_ms for c in corrections}
    tasks = []
    for t in problem.tasks:
        positions = tuple(
            tuple(
                replace(
                    o,
                    latency_ms={k: fix.get((o.digest, k), v) for k, v in o.latency_ms.items()},
                    latency_source="measured" if any((o.digest, k) in fix for k in o.latency_ms) else o.latency_source,
                )
                for o in options
            )
            for options in t.positions
        )
        tasks.append(replace(t, positions=positions))
    return replace(problem, tasks=tuple(tasks))


def corrected_profile(profile: Profile, corrections: Sequence[BlockCorrection], device: str) -> Profile:
    """``profile`` with the corrected entries' latencies measured by the runtime on ``device``."""
    fix = {(c.digest, c.processor): c for c in corrections}
    entries: list[ProfileEntry] = []
    for e in profile.entries:
        c = fix.get((e.digest, e.processor))
        if c is None:
            entries.append(e)
            continue
        entries.append(
            replace(
                e,
                latency_ms=c.measured_ms,
                latency_iqr_ms=0.0,
                latency_p90_ms=max(e.latency_p90_ms, c.measured_ms),
                source="measured",
                device=device,
                repeats=c.samples,
                note=f"sparseloom calibrate: mean runtime service time (block run + hand-off); was {e.latency_ms:.4f} ms ({e.source})",
            )
        )
    return replace(profile, entries=tuple(entries), meta={**profile.meta, "calibrated_by": "sparseloom calibrate"})


def calibrate(
    problem: Problem,
    policy: str,
    soc: SoCSpec,
    pool: Any,
    arrivals: Arrivals,
    inputs: Callable[[str], tuple[torch.Tensor, ...]],
    *,
    cache_dir: Path,
    warmup_s: float = 0.0,
    slo_changes: Sequence[SLOChangeEvent] = (),
    max_in_flight: int = 64,
    every_s: float = 0.0,
    on_tick: Callable[[Runtime], None] | None = None,
    min_samples: int = 5,
) -> Calibration:
    """Run ``arrivals`` for real and in the simulator (same plan, same arrivals); measure the errors.

    ``problem`` must only name processors present here (see :func:`sparseloom.runtime.host.restrict`).
    Blocks the run executed at least ``min_samples`` times get a measured correction.
    """
    with Runtime(problem, registry.create(policy), soc, pool, cache_dir=cache_dir, max_in_flight=max_in_flight) as rt:
        plan = rt.plan
        rt.warm()
        # One request per task before the clock starts, so lazily initialised kernels are not measured.
        for t in problem.tasks:
            rt.submit(t.name, *inputs(t.name)).exception(timeout=120)
        done = replay(rt, arrivals, inputs, slo_changes=slo_changes, every_s=every_s, on_tick=on_tick,
                      keep_futures=False)
        real = rt.result(duration_s=arrivals.duration_s, warmup_s=warmup_s, seed=arrivals.seed, origin_ms=done.start_ms)
        measured = rt.recorder.service_means_ms()
        cv = rt.recorder.service_cv()
    corrections = []
    for t in problem.tasks:
        for options in t.positions:
            for o in options:
                for k, ms in o.latency_ms.items():
                    m = measured.get((o.digest, k))
                    if m is not None and m[1] >= min_samples:
                        corrections.append(BlockCorrection(o.digest, k, ms, m[0], m[1]))
    unique = tuple({(c.digest, c.processor): c for c in corrections}.values())
    sim = simulate(problem, registry.create(policy), arrivals, warmup_s=warmup_s, slo_changes=slo_changes, plan=plan)
    fixed = corrected_problem(problem, unique)
    sim2 = simulate(fixed, registry.create(policy), arrivals, warmup_s=warmup_s, slo_changes=slo_changes, plan=plan,
                    latency_cv=cv)
    return Calibration(policy, real, sim, sim2, fidelity(real, sim), fidelity(real, sim2), unique, cv)


def summary_lines(cal: Calibration) -> list[str]:
    """The calibration as terminal lines."""

    def line(name: str, r: RunResult) -> str:
        return (
            f"  {name:<28} p50 {r.latency_ms.p50:8.3f} ms  p99 {r.latency_ms.p99:8.3f} ms  "
            f"violations {r.slo_violation_rate:6.1%}  throughput {r.throughput_rps:8.1f}/s"
        )

    return [
        f"calibration of policy {cal.policy} ({cal.real.requests} requests in the window)",
        line("runtime (measured)", cal.real),
        line("simulator (profile)", cal.simulated),
        line("simulator (corrected)", cal.corrected),
        f"  error before correction: {cal.before.describe()}",
        f"  error after correction:  {cal.after.describe()}",
        (f"  {len(cal.corrections)} block latencies measured; median ratio measured/profile "
        f"{_median([c.ratio for c in cal.corrections]):.2f}; measured latency spread (cv) {cal.latency_cv:.2f}"),
    ]


def _median(xs: Sequence[float]) -> float:
    s = sorted(x for x in xs if math.isfinite(x))
    return s[len(s) // 2] if s else math.nan


