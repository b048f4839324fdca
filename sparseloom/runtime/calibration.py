"""Fidelity check: the same workload in the real runtime and in the simulator, and measured corrections.

The runtime replays seeded arrivals in real time; the simulator runs the same
arrivals with the same plan. Errors are the simulator's figure minus the
measured one: p50 / p99 latency and throughput in % of the measured value, the
violation rate in percentage points. Three simulations are compared with the
real run:

- ``simulated``: the profile's block latencies as they are;
- ``adjusted``: the profile plus the runtime's cost over it, per task, as a
  function of how long the processor idled before the request's first block
  (decision, admission, waking the worker, blocks starting colder or warmer
  than the profiler timed them, completion), and of whether the processor last
  ran the same task (warm) or another (cold), with its spread: a
  :class:`sparseloom.sim.wake.Wake` of latency minus the plan's expected block
  latencies on probe requests sent one at a time after each of several idle
  gaps (:func:`sparseloom.assemble.idle_gaps_ms`), each task twice in a row
  (cold, then warm), *before and after* the measured window: no number from
  the window itself goes in (out of sample);
- ``corrected``: each block's run time measured *in* the window (a lognormal
  with the measured mean and median, drawn by the simulator with
  ``latency_cv``), plus
  the median overhead of the window's requests (in sample: it shows how much of
  the remaining error is the block latencies).

The corrections can be written back into a profile (``corrected_profile``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from backends.processor import SoCSpec
from backends.profile import Profile, ProfileEntry
from backends.profiler import IDLE_MS
from scheduler import registry
from scheduler.problem import Problem
from sparseloom.core.overload import MAX_IN_FLIGHT
from sparseloom.runtime.engine import Runtime
from sparseloom.runtime.replay import replay
from sparseloom.runtime.stats import result_dict
from sparseloom.sim.experiment import Experiment
from sparseloom.core.metrics import RunResult
from sparseloom.sim.runner import Arrivals, simulate_in
from sparseloom.sim.wake import Wake, WakeCurve


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
    """A block's latency on a processor: the profile's (modelled or measured offline) and the runtime's.

    ``measured_ms`` is what the simulator is given: the mean run time (the busy time a processor
    really spent); the simulator draws around it with a spread that gives the measured median.
    """

    digest: str
    processor: str
    profile_ms: float
    measured_ms: float
    samples: int
    median_ms: float = 0.0
    p90_ms: float = 0.0

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.profile_ms if self.profile_ms > 0 else math.inf


@dataclass(frozen=True)
class Calibration:
    """A real run, its three simulations (see the module docstring) and the error of each."""

    policy: str
    real: RunResult  # measured
    simulated: RunResult  # modelled from the profile
    adjusted: RunResult  # modelled from the profile plus the measured per-request overhead per task (out of sample)
    corrected: RunResult  # modelled from block run times measured in the window (in sample)
    before: Fidelity
    adjusted_error: Fidelity
    after: Fidelity
    corrections: tuple[BlockCorrection, ...]
    # Per task, latency over the profile's block latencies by idle gap and warmth, on probe requests (measured).
    wake: Mapping[str, Wake] = field(default_factory=dict)
    probe_samples: int = 0  # probe requests per task and gap, warm and cold together
    # Median of the same in the measured window (in sample), charged by the corrected simulation.
    window_overhead_ms: float = 0.0
    # Spread of block run times fitted on their mean and p50, given to the corrected simulation as its latency_cv.
    latency_cv: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "real": result_dict(self.real, "measured"),
            "simulated": result_dict(self.simulated, "modelled (profile)"),
            "adjusted": result_dict(self.adjusted, "modelled (profile + measured runtime overhead, out of sample)"),
            "corrected": result_dict(self.corrected, "modelled (block run times measured in the window, in sample)"),
            "error_profile": _finite(vars(self.before)),
            "error_adjusted": _finite(vars(self.adjusted_error)),
            "error_in_sample": _finite(vars(self.after)),
            "overhead_ms": {
                "source": "measured",
                "samples_per_task_and_gap": self.probe_samples,
                "per_task_median_by_gap_ms": {
                    t: {kind: {f"{g:g}": v for g, v in c.median_ms().items()}
                        for kind, c in (("warm", w.warm), ("cold", w.cold)) if c is not None}
                    for t, w in self.wake.items()
                },
                "in_window_median": self.window_overhead_ms,
            },
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


def corrected_problem(problem: Problem, corrections: Sequence[BlockCorrection],
                      overhead_ms: float | Mapping[str, float] = 0.0) -> Problem:
    """``problem`` with each corrected (block, processor) latency replaced by the measured one, and
    ``overhead_ms`` (the runtime's per-request overhead, for all tasks or per task; negative where
    the profile overestimates) added to every first block, at least 0: the simulator charges per
    block, and every request runs exactly one first block."""
    fix = {(c.digest, c.processor): c.measured_ms for c in corrections}
    tasks = []
    for t in problem.tasks:
        extra = overhead_ms.get(t.name, 0.0) if isinstance(overhead_ms, Mapping) else overhead_ms
        positions = tuple(
            tuple(
                replace(
                    o,
                    latency_ms={k: max(0.0, fix.get((o.digest, k), v) + (extra if p == 0 else 0.0))
                                for k, v in o.latency_ms.items()},
                    latency_source="measured" if any((o.digest, k) in fix for k in o.latency_ms) else o.latency_source,
                )
                for o in options
            )
            for p, options in enumerate(t.positions)
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
                latency_ms=c.median_ms,
                latency_iqr_ms=0.0,
                latency_p90_ms=c.p90_ms,
                source="measured",
                device=device,
                repeats=c.samples,
                note=f"sparseloom calibrate: median run time in the runtime; was {e.latency_ms:.4f} ms ({e.source})",
            )
        )
    return replace(profile, entries=tuple(entries), meta={**profile.meta, "calibrated_by": "sparseloom calibrate"})


# Probe rounds before the window and again after it; each sends every task twice per idle gap,
# so there are 100 samples per task and gap (warm and cold together): every 5%-quantile of a
# wake curve rests on a few of them even where only half are warm.
PROBE_REQUESTS = 25


def calibrate(
    problem: Problem,
    policy: str,
    soc: SoCSpec,
    pool: Any,
    experiment: Experiment,
    arrivals: Arrivals,
    inputs: Callable[[str], tuple[torch.Tensor, ...]],
    *,
    cache_dir: Path,
    max_in_flight: int = MAX_IN_FLIGHT,
    every_s: float = 0.0,
    on_tick: Callable[[Runtime], None] | None = None,
    min_samples: int = 5,
    probe_requests: int = PROBE_REQUESTS,
    probe_gaps_ms: Sequence[float] = (0.0, IDLE_MS),
) -> Calibration:
    """Run ``arrivals`` (one seed of ``experiment``: its warm-up and SLO changes apply) for real and in
    the simulator (same plan, same arrivals); measure the errors.

    ``problem`` must only name processors present here (see :func:`sparseloom.runtime.host.restrict`).
    Blocks the run executed at least ``min_samples`` times get a measured correction. ``probe_gaps_ms``:
    the idle gaps the wake curve is probed at (the workload's: see
    :func:`sparseloom.assemble.idle_gaps_ms`; by default back to back and the profiler's default gap).
    """
    if arrivals.duration_s != experiment.duration_s:
        raise ValueError(f"the arrivals last {arrivals.duration_s:g} s, the experiment {experiment.duration_s:g} s")
    with Runtime(problem, registry.create(policy), soc, pool, cache_dir=cache_dir, max_in_flight=max_in_flight) as rt:
        limits = rt.overload
        plan = rt.plan
        rt.warm()
        # One request per task before the clock starts, so lazily initialised kernels are not measured.
        for t in problem.tasks:
            rt.submit(t.name, *inputs(t.name)).exception(timeout=120)
        probes = probe_wake(rt, inputs, probe_requests, probe_gaps_ms)
        since = rt.recorder.completions
        done = replay(rt, arrivals, inputs, slo_changes=experiment.slo_changes, every_s=every_s, on_tick=on_tick,
                      keep_futures=False)
        real = rt.result(duration_s=arrivals.duration_s, warmup_s=experiment.warmup_s, seed=arrivals.seed,
                         origin_ms=done.start_ms)
        measured = rt.recorder.service_times_ms()
        sigma = rt.recorder.service_sigma()
        in_window = rt.recorder.overheads_ms(since)
        # Probed again after the window: the host's load drifts (other processes), so probes on both
        # sides of the window bracket it; still none of the window's own requests.
        for name, by_key in probe_wake(rt, inputs, probe_requests, probe_gaps_ms).items():
            for key, samples in by_key.items():
                probes[name].setdefault(key, []).extend(samples)
    wake = {t: w for t, by_key in probes.items() if (w := _wake(by_key)) is not None}
    # The median: below ~50% utilisation most requests find the worker idle, so queueing (which the
    # simulator models itself) stays out of it.
    window_overhead = statistics.median(in_window) if in_window else 0.0
    cv = math.sqrt(math.expm1(sigma * sigma))
    corrections = []
    for t in problem.tasks:
        for options in t.positions:
            for o in options:
                for k, ms in o.latency_ms.items():
                    m = measured.get((o.digest, k))
                    if m is not None and m[3] >= min_samples:
                        corrections.append(BlockCorrection(o.digest, k, ms, m[0], m[3], m[1], m[2]))
    unique = tuple({(c.digest, c.processor): c for c in corrections}.values())
    def run(p: Problem, at: Experiment) -> RunResult:
        # The runtime's overload limits apply to each simulation too.
        return simulate_in(replace(at, overload=limits), p, registry.create(policy), arrivals, plan=plan)

    sim = run(problem, experiment)
    adjusted = run(problem, replace(experiment, wake=tuple(wake.items())))
    fixed = run(corrected_problem(problem, unique, window_overhead), replace(experiment, latency_cv=cv))
    return Calibration(policy, real, sim, adjusted, fixed, fidelity(real, sim), fidelity(real, adjusted),
                       fidelity(real, fixed), unique, wake, 4 * probe_requests, window_overhead, cv)


def _wake(by_key: Mapping[tuple[bool, float], Sequence[float]]) -> Wake | None:
    def curve(warm: bool) -> WakeCurve | None:
        samples = {g: s for (w, g), s in by_key.items() if w == warm and s}
        return WakeCurve.measured(samples) if samples else None

    warm, cold = curve(True), curve(False)
    return Wake(warm, cold) if warm or cold else None


def probe_wake(rt: Runtime, inputs: Callable[[str], tuple[torch.Tensor, ...]], requests: int,
               gaps_ms: Sequence[float]) -> dict[str, dict[tuple[bool, float], list[float]]]:
    """Per task, keyed by (warm, idle gap in ms), the runtime's latency over the plan's expected
    block latencies (ms, measured): ``requests`` rounds; in each, per gap and task, two requests,
    each after that long idle. The first follows another task's request (cold; with one task, it is
    warm too), the second follows the first (warm). The very first request is not counted: what ran
    before it is not known."""
    if not gaps_ms or any(g < 0 for g in gaps_ms):
        raise ValueError(f"probe gaps must be one or more idle times >= 0 ms, got {tuple(gaps_ms)}")
    out: dict[str, dict[tuple[bool, float], list[float]]] = {t.name: {} for t in rt.problem.tasks}
    last: str | None = None
    for _ in range(requests):
        for g in gaps_ms:
            for t in rt.problem.tasks:
                for _ in range(2):
                    if g > 0:
                        time.sleep(g / 1e3)
                    since = rt.recorder.completions
                    rt.submit(t.name, *inputs(t.name)).exception(timeout=120)
                    if last is not None:
                        key = (last == t.name, float(g))
                        out[t.name].setdefault(key, []).extend(rt.recorder.overheads_ms(since, over="expected"))
                    last = t.name
    return out


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
        line("simulator (+ overhead)", cal.adjusted),
        line("simulator (in-sample)", cal.corrected),
        f"  error, profile only:                       {cal.before.describe()}",
        f"  error, profile + runtime overhead:         {cal.adjusted_error.describe()}",
        f"  error, in-sample block latencies:          {cal.after.describe()}",
        *(f"  runtime over the profile, {t} {kind} (median of probe requests around the window, "
          f"{cal.probe_samples} per idle gap): " + ", ".join(f"{v:+.3f} ms after {g:g} ms" for g, v in c.median_ms().items())
          for t, w in cal.wake.items() for kind, c in (("warm", w.warm), ("cold", w.cold)) if c is not None),
        f"  runtime over measured block run times in the window (median): {cal.window_overhead_ms:.3f} ms",
        (f"  {len(cal.corrections)} block latencies measured in the window, median ratio "
         f"measured/profile {_median([c.ratio for c in cal.corrections]):.2f}, spread (cv) {cal.latency_cv:.2f}"),
    ]


def _median(xs: Sequence[float]) -> float:
    s = sorted(x for x in xs if math.isfinite(x))
    return s[len(s) // 2] if s else math.nan


