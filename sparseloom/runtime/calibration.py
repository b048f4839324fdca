"""Fidelity check: the same workload in the real runtime and in the simulator, and measured corrections.

The runtime replays seeded arrivals in real time; the simulator runs the same
arrivals with the same plan. Errors are the simulator's figure minus the
measured one: p50 / p99 latency and throughput in % of the measured value, the
violation rate in percentage points. Three simulations are compared with the
real run:

- ``simulated``: the profile's block latencies as they are;
- ``adjusted``: the profile plus the runtime's cost over it, per task, as a
  function of how long the worker idled before the request's first block
  (decision, admission, waking the worker, blocks starting colder or warmer
  than the profiler timed them, completion), and of whether the worker last
  ran the same task (warm) or another (cold), with its spread: a
  :class:`sparseloom.sim.wake.Wake` measured on *probe runs*, other seeds'
  arrivals of the same workload replayed for real just before the measured
  window and again just after it (:func:`probe_arrivals`). Each of their
  requests gives its first block's worker idle gap, warmth, and two costs: from
  when that worker took it to its last block's start, beyond the blocks run
  before (the start cost, charged on the first block), and from that start to
  its end, beyond that block's run time (the finish cost, charged on the last
  block; see :mod:`sparseloom.sim.wake` for why the split matters). So the
  cost is measured under the workload's own load, not on isolated requests
  (which on this host cost 0.2-0.3 ms more after long gaps than the same
  requests inside a run), and no number from the window itself goes in (out
  of sample);
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backends.processor import SoCSpec
from backends.profile import Profile, ProfileEntry
from scheduler import registry
from scheduler.problem import Problem
from sparseloom.core.overload import MAX_IN_FLIGHT
from sparseloom.runtime.engine import Runtime
from sparseloom.runtime.replay import replay
from sparseloom.runtime.stats import WakeSample, result_dict
from sparseloom.sim.experiment import Experiment, ProfileError
from sparseloom.core.metrics import RunResult
from sparseloom.sim.runner import Arrivals, arrivals_in, simulate_in
from sparseloom.sim.wake import Wake, WakeCurve
from sparseloom.workload import Arrival


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
    # Per task, latency over the profile's block latencies by idle gap and warmth, on the probe runs (measured).
    wake: Mapping[str, Wake] = field(default_factory=dict)
    probe_samples: int = 0  # requests the probe runs completed, all tasks
    # Median of the same in the measured window (in sample), charged by the corrected simulation.
    window_overhead_ms: float = 0.0
    # Spread of block run times fitted on their mean and p50, given to the corrected simulation as its latency_cv.
    latency_cv: float = 0.0
    # Per task: how much its requests' median service time (from when the worker took them) moved
    # from the probe run before the window to the one after, in % (measured): the host's drift
    # across the window, which no out-of-sample model can follow.
    drift_pct: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "real": result_dict(self.real, "measured"),
            "simulated": result_dict(self.simulated, "modelled (profile)"),
            "adjusted": result_dict(self.adjusted, "modelled (block run times and wake-up cost measured on probe runs, out of sample)"),
            "corrected": result_dict(self.corrected, "modelled (block run times measured in the window, in sample)"),
            "error_profile": _finite(vars(self.before)),
            "error_adjusted": _finite(vars(self.adjusted_error)),
            "error_in_sample": _finite(vars(self.after)),
            "overhead_ms": {
                "source": "measured",
                "probe_requests": self.probe_samples,
                "per_task_median_by_gap_ms": {
                    t: {kind: {f"{g:g}": v for g, v in c.median_ms().items()} for kind, c in _curves(w)}
                    for t, w in self.wake.items()
                },
                "in_window_median": self.window_overhead_ms,
            },
            "latency_cv": self.latency_cv,
            "probe_drift_pct": _finite(dict(self.drift_pct)),
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


# Each probe run replays this long of another seed's arrivals, before the window and again after
# it: at 8-200 requests/s per task that is 80-2000 requests per task and side, tens per gap bin.
PROBE_S = 10.0
# Probe runs take seeds this far from the window's, so no probe replays the arrivals that the
# calibration of a nearby seed measures.
PROBE_SEED_OFFSET = 1_000_003
# A wake curve's positive idle gaps are cut into this many bins of equal count (plus the queued
# requests, gap 0): more bins follow the curve's shape closer, fewer keep more samples per bin for
# its spread (5%-quantiles).
GAP_BINS = 4
# Fewer samples than this for a task's warm or cold curve, and the other curve serves for both.
MIN_CURVE_SAMPLES = 20


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
    probes: Sequence[Arrivals] = (),
) -> Calibration:
    """Run ``arrivals`` (one seed of ``experiment``: its warm-up and SLO changes apply) for real and in
    the simulator (same plan, same arrivals); measure the errors.

    ``problem`` must only name processors present here (see :func:`sparseloom.runtime.host.restrict`).
    Blocks the run executed at least ``min_samples`` times get a measured correction. ``probes``:
    other seeds' arrivals of the same workload (see :func:`probe_arrivals`), the first half replayed
    before the window and the rest after it, whose requests measure the wake curves; none, and the
    adjusted simulation is the profile's.
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
        half = (len(probes) + 1) // 2
        before = measured_probes = probe_runs(rt, probes[:half], inputs)
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
        after = probe_runs(rt, probes[half:], inputs)
        measured_probes += after
    # Out of sample, from the probe runs: each block's run time, and per request what the runtime took
    # beyond its blocks' (those mean) run times from when its first block's worker took it.
    block_ms, factors = truth_of(problem, measured_probes, min_samples)
    expected = {o.digest: min(o.latency_ms.values()) for t in problem.tasks for opts in t.positions for o in opts}
    names = [t.name for t in problem.tasks]
    def mean_ms(ds: Sequence[str]) -> float:
        return sum(block_ms.get(d, expected[d]) for d in ds)

    wake = {names[k]: w for k in range(len(names))
            if (w := wake_of([(g, warm, head - mean_ms(ds[:-1]), tail - mean_ms(ds[-1:]))
                              for t, g, warm, head, tail, ds in measured_probes.requests if t == k])) is not None}
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
    adjusted = run(problem, replace(experiment, wake=tuple(wake.items()),
                                    profile_error=ProfileError(factors=tuple(factors.items()))))
    fixed = run(corrected_problem(problem, unique, window_overhead), replace(experiment, latency_cv=cv))
    return Calibration(policy, real, sim, adjusted, fixed, fidelity(real, sim), fidelity(real, adjusted),
                       fidelity(real, fixed), unique, wake, len(measured_probes.requests), window_overhead, cv,
                       drift(names, before, after))


def probe_arrivals(experiment: Experiment, specs: Mapping[str, Arrival], seed: int,
                   seconds: float = PROBE_S) -> tuple[Arrivals, Arrivals]:
    """The two probe runs of a calibration of ``seed``: ``seconds`` of the workload's arrivals
    (``specs``, per task) at seeds :data:`PROBE_SEED_OFFSET` away, for before and after the window."""
    if not seconds > 0:
        raise ValueError(f"probe runs need a positive duration, got {seconds:g} s")
    at = replace(experiment, duration_s=seconds, warmup_s=0.0, slo_changes=())
    return arrivals_in(at, specs, seed + PROBE_SEED_OFFSET), arrivals_in(at, specs, seed + PROBE_SEED_OFFSET + 1)


@dataclass(frozen=True)
class Probes:
    """What probe runs measured: per request a :data:`~sparseloom.runtime.stats.WakeSample`, and every
    block run as ((digest, processor), ms)."""

    requests: tuple[WakeSample, ...] = ()
    blocks: tuple[tuple[tuple[str, str], float], ...] = ()

    def __add__(self, other: Probes) -> Probes:
        return Probes(self.requests + other.requests, self.blocks + other.blocks)


def probe_runs(rt: Runtime, runs: Sequence[Arrivals], inputs: Callable[[str], tuple[torch.Tensor, ...]]) -> Probes:
    """Replay each probe run on ``rt``; what its requests and blocks measured."""
    out = Probes()
    for run in runs:
        since = rt.recorder.wakes
        rt.recorder.tap()
        try:
            replay(rt, run, inputs, keep_futures=False)
        finally:
            blocks = rt.recorder.untap()
        out += Probes(tuple(rt.recorder.wake_samples(since)), tuple(blocks))
    return out


def truth_of(problem: Problem, probes: Probes, min_samples: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per block digest run at least ``min_samples`` times in the probe runs: its mean run time
    (ms), and that over the profile's latency on the processors it ran on (the truth factor)."""
    runs: dict[tuple[str, str], list[float]] = {}
    for key, ms in probes.blocks:
        runs.setdefault(key, []).append(ms)
    profile = {(o.digest, k): v for t in problem.tasks for opts in t.positions for o in opts
               for k, v in o.latency_ms.items()}
    mean: dict[str, list[float]] = {}
    over: dict[str, list[float]] = {}
    for (d, k), v in runs.items():
        if len(v) >= min_samples and profile.get((d, k), 0.0) > 0:
            mean.setdefault(d, []).extend(v)
            over.setdefault(d, []).append(statistics.fmean(v) / profile[(d, k)])
    return ({d: statistics.fmean(v) for d, v in mean.items()}, {d: statistics.fmean(v) for d, v in over.items()})


def drift(names: Sequence[str], before: Probes, after: Probes) -> dict[str, float]:
    """Per task with requests in both probe runs: the change of their median service time (from when
    the first block's worker took them to their end), after against before, in %."""
    out: dict[str, float] = {}
    for k, name in enumerate(names):
        a = [head + tail for t, _, _, head, tail, _ in before.requests if t == k and math.isfinite(tail)]
        b = [head + tail for t, _, _, head, tail, _ in after.requests if t == k and math.isfinite(tail)]
        if a and b and statistics.median(a) > 0:
            out[name] = (statistics.median(b) / statistics.median(a) - 1.0) * 100.0
    return out


def wake_of(samples: Sequence[tuple[float, bool, float, float]]) -> Wake | None:
    """A task's :class:`Wake` from its (idle gap, warm, start cost, finish cost) samples: start
    curves per warmth with at least :data:`MIN_CURVE_SAMPLES`, and a finish curve of those with a
    finish cost (NaN: a dropped request's, never measured)."""
    def curve(mine: Sequence[tuple[float, float]]) -> WakeCurve | None:
        """The queued requests (gap 0) and :data:`GAP_BINS` equal-count bins of the positive gaps,
        each at its median gap."""
        if len(mine) < MIN_CURVE_SAMPLES:
            return None
        by_gap: dict[float, list[float]] = {}
        queued = [c for g, c in mine if g <= 0.0]
        if queued:
            by_gap[0.0] = queued
        idle = sorted((g, c) for g, c in mine if g > 0.0)
        for part in np.array_split(np.arange(len(idle)), min(GAP_BINS, len(idle))) if idle else ():
            # Bins whose median gaps tie are one bin.
            by_gap.setdefault(float(np.median([idle[i][0] for i in part])), []).extend(idle[i][1] for i in part)
        return WakeCurve.measured(by_gap)

    warm = curve([(g, c) for g, w, c, _ in samples if w])
    cold = curve([(g, c) for g, w, c, _ in samples if not w])
    finish = curve([(g, f) for g, _, _, f in samples if math.isfinite(f)])
    return Wake(warm, cold, finish) if warm or cold else None


def _curves(w: Wake) -> list[tuple[str, WakeCurve]]:
    """A wake's measured curves by name: the start cost warm and cold, the finish cost."""
    return [(kind, c) for kind, c in (("warm", w.warm), ("cold", w.cold), ("finish", w.finish)) if c is not None]


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
        line("simulator (probe runs)", cal.adjusted),
        line("simulator (in-sample)", cal.corrected),
        f"  error, profile only:                       {cal.before.describe()}",
        f"  error, probe-run blocks + wake (out of s.): {cal.adjusted_error.describe()}",
        f"  error, in-sample block latencies:          {cal.after.describe()}",
        *(f"  runtime over probe-run block times, {t} {kind} (median per idle gap, {cal.probe_samples} probe-run requests around "
          f"the window): " + ", ".join(f"{v:+.3f} ms after {g:.2g} ms" for g, v in c.median_ms().items())
          for t, w in cal.wake.items() for kind, c in _curves(w)),
        f"  runtime over measured block run times in the window (median): {cal.window_overhead_ms:.3f} ms",
        ("  host drift across the window (median service time, probe run after vs before): "
         + (", ".join(f"{t} {v:+.1f}%" for t, v in cal.drift_pct.items()) or "n/a")),
        (f"  {len(cal.corrections)} block latencies measured in the window, median ratio "
         f"measured/profile {_median([c.ratio for c in cal.corrections]):.2f}, spread (cv) {cal.latency_cv:.2f}"),
    ]


def _median(xs: Sequence[float]) -> float:
    s = sorted(x for x in xs if math.isfinite(x))
    return s[len(s) // 2] if s else math.nan


