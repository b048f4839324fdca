"""Joint stitched-variant selection and processor placement as one integer program (PuLP).

Variables (only for pairs that exist, i.e. the block can run on the processor):
  x[t,p,o,k] in {0,1}  task t runs option o at position p on processor k
  w[t,p]     in [0,1]  task t changes processor between positions p and p+1
                       (w >= z[t,p,k] - z[t,p+1,k] for every k, z = sum_o x; it only ever
                       costs latency, so at the optimum it is exactly the change indicator)
  u[d]       in [0,1]  block digest d is resident (u[d] >= sum_k x[t,p,o,k] for every use
                       of d, so a digest shared by several tasks or positions counts once)
Constraints: one (o,k) per position; latency (blocks + transfers + queueing) <= SLO; base
accuracy + sum of chosen deltas >= min accuracy; per processor utilisation sum_t rate_t x
latency <= the utilisation level chosen for it; sum_d memory_d u[d] <= budget.

Queueing (``LoadModel.queueing``; off by default, by measurement, see LoadModel): each
processor k is an M/G/1 queue. Its Pollaczek-Khinchine mean wait is W_k = R_k / (1 - rho_k),
with the mean residual work R_k = sum rate x latency^2 / 2 linear in x. The 1/(1 - rho) factor
is linearised over utilisation levels (scheduler.routes.UTILISATION_LEVELS): binary y[k,l] picks
a level, rho_k <= level_l and W_k >= R_k / (1 - level_l) when y[k,l]. Each position p of task t
waits q[t,p] >= W_k where it runs (big-M on z[t,p,k]), and the waits count in its latency
constraint and in the "slo" objective. So a plan may fill a processor as far as the SLOs of the
tasks on it allow, and a task with long blocks is kept off a processor shared with a task whose
SLO its blocks would eat. Without it, utilisation <= ``LoadModel.cap``. Rates are the sustained
ones (``TaskSpec.load_rate_hz``: a bursty task's on-state rate) unless ``LoadModel.sustained``
is off.

Stitching is decided inside the program without enumerating
the K^B stitched variants. The combined x[t,p,o,k] form was chosen over a factorised
y[t,p,o] / z[t,p,k] form because latency depends on the (option, processor) pair, which the
factorised form can only express with extra linearisation variables.

Objectives (see scheduler.routes.objective_value, which evaluates the same formulas):
``slo`` (linear, fast), ``throughput`` (min of the peak relative utilisation: one extra
continuous variable and one row per processor), ``memory``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pulp

from scheduler.plan import Route, SolveInfo
from scheduler.problem import Problem, TaskSpec
from scheduler.routes import (
    OBJECTIVES,
    TIE_WEIGHT,
    LoadModel,
    digest_memory,
    evaluate,
    latency_weight,
    levels,
    memory_scale_mb,
    request_shares,
    utilisation_cap,
)

# Objectives only the diagnosis uses: shortest latency / highest accuracy / least memory / peak utilisation.
_DIAGNOSTIC = ("latency", "accuracy")
# Penalty per unit of normalised constraint violation in the elastic (best-effort) program.
ELASTIC_PENALTY = 1e3


@dataclass(frozen=True)
class SolverConfig:
    """Which MILP solver and how long it may run; every solve has a time limit and a gap."""

    backend: str = (
        "highs"  # "highs" (highspy through PuLP) or "cbc" (PuLP's bundled CBC)
    )
    time_limit_s: float = 10.0
    gap_rel: float = 1e-4
    threads: int = 1

    def __post_init__(self) -> None:
        if self.backend not in ("highs", "cbc"):
            raise ValueError(
                f"unknown solver backend {self.backend!r}; known: highs, cbc"
            )
        if not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValueError("time_limit_s must be a positive finite number")
        if not 0 <= self.gap_rel < 1:
            raise ValueError("gap_rel must lie in [0, 1)")


@dataclass(frozen=True)
class Restriction:
    """Limits on the search, used by the baselines and by the diagnosis.

    ``allowed`` maps a task to its allowed option indices per position (all when absent);
    ``whole_variant`` forces the same variant at every position (no stitching);
    ``single_processor`` forces all positions of a task onto one processor (no partitioning).
    """

    allowed: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    whole_variant: bool = False
    single_processor: bool = False


@dataclass(frozen=True)
class Enforce:
    """Which constraint families the program enforces (the diagnosis relaxes them one by one)."""

    latency: bool = True
    accuracy: bool = True
    utilisation: bool = True
    memory: bool = True


@dataclass(frozen=True)
class Solution:
    """Routes chosen by one solve (empty when no solution was found) and how it went."""

    routes: Mapping[str, Route]
    info: SolveInfo

    @property
    def found(self) -> bool:
        return self.info.status in ("optimal", "feasible")


def solve(
    problem: Problem,
    objective: str = "slo",
    config: SolverConfig | None = None,
    restriction: Restriction | None = None,
    enforce: Enforce | None = None,
    elastic: bool = False,
    load: LoadModel | None = None,
    memory_slack: float | None = None,
    load_only: bool = False,
) -> Solution:
    """Solve the placement program; never raises for an infeasible instance (status says so).

    With ``elastic`` every constraint may be violated at a penalty (ELASTIC_PENALTY per unit of
    normalised violation), which yields best-effort routes for an infeasible workload; with
    ``load_only`` too, only the load constraints (latency, utilisation) give and accuracy (with the
    measured-accuracy cuts) and memory stay hard: an accuracy miss fails every request of a task,
    and blocks over the budget thrash the storage, where an overload fails only some requests.

    ``memory_slack`` (the "slo" and "throughput" objectives): a second, lexicographic stage that
    minimises resident memory among solutions whose objective is within ``memory_slack`` (relative)
    of the first stage's; the info keeps the first stage's objective value and adds both stages' work.
    """
    if objective not in OBJECTIVES + _DIAGNOSTIC:
        raise ValueError(
            f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}"
        )
    cfg = config or SolverConfig()
    res = restriction or Restriction()
    enf = enforce or Enforce()
    start = time.perf_counter()
    if not problem.tasks:
        return Solution(
            {}, SolveInfo(_solver_name(cfg), "optimal", 0.0, 0.0, 0.0, objective)
        )
    model = _Model(problem, objective, res, enf, elastic, load or LoadModel(), load_only)
    if model.unplaceable:
        info = SolveInfo(
            _solver_name(cfg),
            "infeasible",
            time.perf_counter() - start,
            None,
            None,
            objective,
        )
        return Solution({}, info)
    status, gap, work = _run(model.lp, cfg)
    wall = time.perf_counter() - start
    if status not in ("optimal", "feasible"):
        return Solution(
            {}, SolveInfo(_solver_name(cfg), status, wall, None, None, objective, work)
        )
    routes = model.routes()
    value = pulp.value(model.lp.objective)
    if memory_slack is not None and objective in ("slo", "throughput") and not elastic and value is not None:
        model.lp += model.lp.objective <= float(value) + memory_slack * abs(float(value)) + 1e-9
        model.lp.setObjective(model.memory)
        second, _, more = _run(model.lp, cfg)
        work += more
        if second in ("optimal", "feasible"):
            routes = model.routes()
        wall = time.perf_counter() - start
    info = SolveInfo(
        _solver_name(cfg),
        status,
        wall,
        gap,
        None if value is None else float(value),
        objective,
        work,
    )
    return Solution(routes, info)


def _solver_name(cfg: SolverConfig) -> str:
    return "HiGHS" if cfg.backend == "highs" else "CBC"


class _Model:
    """The PuLP program for one problem; kept as a class to share index maps with extraction."""

    def __init__(
        self,
        problem: Problem,
        objective: str,
        res: Restriction,
        enf: Enforce,
        elastic: bool,
        load: LoadModel,
        load_only: bool = False,
    ) -> None:
        self.problem = problem
        self.lp = pulp.LpProblem("sparseloom", pulp.LpMinimize)
        self.memory = pulp.LpAffineExpression()
        self.unplaceable = False
        procs = [k.name for k in problem.processors]
        shares = request_shares(problem)
        mem = digest_memory(problem)
        # x[(t, p)] -> list of (o, k, var)
        self.x: dict[tuple[int, int], list[tuple[int, str, pulp.LpVariable]]] = {}
        uses: dict[str, list[pulp.LpAffineExpression]] = {}
        util_terms: dict[str, list[tuple[pulp.LpVariable, float]]] = {
            k: [] for k in procs
        }
        # Mean residual work (ms) each cell brings to its processor: rate x latency^2 / 2; and the
        # most one position can bring to each (their sum bounds the processor's residual work).
        resid_terms: dict[str, list[tuple[pulp.LpVariable, float]]] = {k: [] for k in procs}
        resid_bound: dict[str, float] = {k: 0.0 for k in procs}
        queueing = load.queueing and enf.utilisation
        # Per task: its latency terms and, per position, its cells on each processor (for the waits).
        pending: list[tuple[TaskSpec, list[tuple[pulp.LpVariable, float]], list[dict[str, list[pulp.LpVariable]]]]] = []
        obj_terms: list[tuple[pulp.LpVariable, float]] = []
        slo_terms: list[tuple[pulp.LpVariable, float]] = []
        penalties: list[tuple[pulp.LpVariable, float]] = []
        n = 0

        def var(
            lo: float = 0, hi: float | None = 1, cat: str = pulp.LpBinary
        ) -> pulp.LpVariable:
            nonlocal n
            n += 1
            return self.lp.add_variable(f"v{n}", lo, hi, cat)

        def slack(weight: float) -> pulp.LpVariable | None:
            if not elastic:
                return None
            s = var(0, None, pulp.LpContinuous)
            penalties.append((s, ELASTIC_PENALTY * weight))
            return s

        for ti, t in enumerate(problem.tasks):
            rate = t.load_rate_hz if load.sustained else t.rate_hz
            zs: list[dict[str, list[pulp.LpVariable]]] = []
            allowed = res.allowed.get(t.name)
            lat_terms: list[tuple[pulp.LpVariable, float]] = []
            acc_terms: list[tuple[pulp.LpVariable, float]] = []
            variant_of: dict[str, pulp.LpVariable] = {}
            if res.whole_variant:
                for v in sorted({o.variant for pos in t.positions for o in pos}):
                    variant_of[v] = var()
                self.lp += pulp.lpSum(variant_of.values()) == 1
            proc_of: dict[str, pulp.LpVariable] = {}
            if res.single_processor:
                for k in procs:
                    proc_of[k] = var()
                self.lp += pulp.lpSum(proc_of.values()) == 1
            z_prev: dict[str, list[pulp.LpVariable]] | None = None
            for p, pos in enumerate(t.positions):
                cells: list[tuple[int, str, pulp.LpVariable]] = []
                z: dict[str, list[pulp.LpVariable]] = {k: [] for k in procs}
                per_variant: dict[str, list[pulp.LpVariable]] = {}
                for o, opt in enumerate(pos):
                    if allowed is not None and o not in allowed[p]:
                        continue
                    y: list[pulp.LpVariable] = []
                    for k, lat in opt.latency_ms.items():
                        if k not in z:
                            continue
                        xv = var()
                        cells.append((o, k, xv))
                        z[k].append(xv)
                        y.append(xv)
                        lat_terms.append((xv, lat))
                        if opt.accuracy_delta:
                            acc_terms.append((xv, opt.accuracy_delta))
                        util_terms[k].append((xv, rate / 1000.0 * lat))
                        if queueing:
                            resid_terms[k].append((xv, rate / 1000.0 * lat * lat / 2.0))
                    if y:
                        uses.setdefault(opt.digest, []).append(pulp.lpSum(y))
                        per_variant.setdefault(opt.variant, []).extend(y)
                if not cells:
                    self.unplaceable = True
                    return
                if queueing:
                    most: dict[str, float] = {}
                    for o, k, _ in cells:
                        lat = pos[o].latency_ms[k]
                        most[k] = max(most.get(k, 0.0), rate / 1000.0 * lat * lat / 2.0)
                    for k, c in most.items():
                        resid_bound[k] += c
                self.x[(ti, p)] = cells
                zs.append(z)
                self.lp += pulp.lpSum(c[2] for c in cells) == 1
                if res.whole_variant:
                    for v, vv in variant_of.items():
                        self.lp += pulp.lpSum(per_variant.get(v, [])) == vv
                if res.single_processor:
                    for k in procs:
                        self.lp += pulp.lpSum(z[k]) == proc_of[k]
                elif z_prev is not None:
                    w = var(0, 1, pulp.LpContinuous)
                    for k in procs:
                        self.lp += w >= pulp.lpSum(z_prev[k]) - pulp.lpSum(z[k])
                    cost = problem.transfer_ms(t.output_mb[p - 1])
                    if cost > 0:
                        lat_terms.append((w, cost))
                z_prev = z
            soft_accuracy = elastic and not load_only
            if enf.accuracy and not soft_accuracy:
                # Estimates are for search, measurements veto: a stitched variant measured below the
                # accuracy SLO is cut off, however well its option terms add up.
                for choice, measured in t.measured_accuracy.items():
                    if measured >= t.min_accuracy - 1e-9 or len(choice) != len(t.positions):
                        continue
                    picked = [c[2] for p, o in enumerate(choice) for c in self.x[(ti, p)] if c[0] == o]
                    if picked:
                        self.lp += pulp.lpSum(picked) <= len(t.positions) - 1
            pending.append((t, lat_terms, zs))
            if enf.accuracy and t.min_score > -math.inf:
                s = None if load_only else slack(100.0)
                self.lp += (
                    pulp.LpAffineExpression(acc_terms) + (s if s is not None else 0)
                    >= t.min_score
                )
            if objective == "latency":
                obj_terms.extend(lat_terms)
            elif objective == "accuracy":
                obj_terms.extend((v, -c) for v, c in acc_terms)
            weight = latency_weight(problem, t, shares)
            slo_terms.extend((v, weight * c) for v, c in lat_terms)

        u = {d: var(0, 1, pulp.LpContinuous) for d in uses}
        for d, exprs in uses.items():
            for e in exprs:
                self.lp += u[d] >= e
        memory = self.memory = pulp.LpAffineExpression([(u[d], mem[d]) for d in uses])
        if enf.memory and math.isfinite(problem.memory_budget_mb):
            s = None if load_only else slack(1.0 / max(problem.memory_budget_mb, 1e-9))
            self.lp += memory <= problem.memory_budget_mb + (s if s is not None else 0)
        peak = var(0, None, pulp.LpContinuous) if objective == "throughput" else None
        wait: dict[str, pulp.LpVariable] = {}
        wait_max: dict[str, float] = {}
        finite = [t.latency_slo_ms for t in problem.tasks if math.isfinite(t.latency_slo_ms)]
        slo_max = max(finite) if len(finite) == len(problem.tasks) else math.inf
        for info in problem.processors:
            busy = pulp.LpAffineExpression(util_terms[info.name])
            if queueing:
                lvs = levels(info)
                picks = [var() for _ in lvs]
                self.lp += pulp.lpSum(picks) == 1
                s = slack(1.0)
                self.lp += busy <= pulp.lpSum(lv * pick for lv, pick in zip(lvs, picks)) + (s if s is not None else 0)
                resid = pulp.LpAffineExpression(resid_terms[info.name])
                top = 1.0 / (1.0 - lvs[-1])
                wait_max[info.name] = top * resid_bound[info.name]
                # Outside the elastic program no task can wait longer than the largest SLO, so that bounds
                # the wait (and the big-M of every position's wait below).
                cap_w = wait_max[info.name] if elastic else min(wait_max[info.name], slo_max)
                w_k = wait[info.name] = var(0, cap_w, pulp.LpContinuous)
                for lv, pick in zip(lvs, picks):
                    self.lp += w_k >= resid * (1.0 / (1.0 - lv)) - wait_max[info.name] + wait_max[info.name] * pick
            elif enf.utilisation:
                s = slack(1.0)
                self.lp += busy <= utilisation_cap(info, load) + (s if s is not None else 0)
            if peak is not None:
                self.lp += peak >= busy * (1.0 / info.max_utilisation)
        for t, lat_terms, zs in pending:
            terms = list(lat_terms)
            if wait:
                for p, z in enumerate(zs):
                    q = var(0, None, pulp.LpContinuous)
                    for k, cells in z.items():
                        big = wait[k].upBound
                        if cells and big:
                            self.lp += q >= wait[k] - big + big * pulp.lpSum(cells)
                    terms.append((q, 1.0))
                    slo_terms.append((q, latency_weight(problem, t, shares)))
                    if objective == "latency":
                        obj_terms.append((q, 1.0))
            if enf.latency and math.isfinite(t.latency_slo_ms):
                s = slack(1.0 / max(t.latency_slo_ms, 1e-9))
                self.lp += pulp.LpAffineExpression(terms) <= t.latency_slo_ms + (s if s is not None else 0)

        if objective == "slo":
            obj_terms = slo_terms
        elif objective == "throughput":
            assert peak is not None
            obj_terms = [(peak, 1.0)] + [(v, TIE_WEIGHT * c) for v, c in slo_terms]
        elif objective == "memory":
            scale = memory_scale_mb(problem)
            obj_terms = [(u[d], mem[d] / scale) for d in uses] + [
                (v, TIE_WEIGHT * c) for v, c in slo_terms
            ]
        self.lp += pulp.LpAffineExpression(obj_terms + penalties)

    def routes(self) -> dict[str, Route]:
        out: dict[str, Route] = {}
        for ti, t in enumerate(self.problem.tasks):
            opts: list[int] = []
            procs: list[str] = []
            for p in range(len(t.positions)):
                o, k, _ = max(self.x[(ti, p)], key=lambda c: c[2].varValue or 0.0)
                opts.append(o)
                procs.append(k)
            out[t.name] = evaluate(self.problem, t, tuple(opts), tuple(procs))
        return out


def _run(lp: pulp.LpProblem, cfg: SolverConfig) -> tuple[str, float | None, int]:
    """Solve and map PuLP's sol_status (not its status, which says Optimal after a time limit);
    also the solver's work (variables + simplex iterations + B&B nodes; 0 where the solver does not say)."""
    log_path: str | None = None
    if cfg.backend == "highs":
        solver: pulp.LpSolver = _QuietHiGHS(
            msg=False,
            timeLimit=cfg.time_limit_s,
            gapRel=cfg.gap_rel,
            threads=cfg.threads,
        )
    else:
        fd, log_path = tempfile.mkstemp(suffix=".log", prefix="sparseloom-cbc-")
        os.close(fd)
        with warnings.catch_warnings():
            # PuLP 3 deprecates its bundled CBC in favour of a separate install; the bundled one is what we compare.
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(
                msg=False,
                timeLimit=cfg.time_limit_s,
                gapRel=cfg.gap_rel,
                threads=cfg.threads,
                logPath=log_path,
            )
    try:
        lp.solve(solver)
        status = map_status(lp.sol_status, lp.status)
        gap = _highs_gap(lp) if cfg.backend == "highs" else _cbc_gap(log_path, status)
        work = _highs_work(lp) if cfg.backend == "highs" else 0
    finally:
        if log_path is not None and os.path.exists(log_path):
            os.remove(log_path)
    return status, gap, work


class _QuietHiGHS(pulp.HiGHS):
    """PuLP's HiGHS, minus the banner HiGHS prints to stdout (fd 1) when the first solver object
    is built in a process, which would corrupt JSON written to stdout."""

    def createAndConfigureSolver(self, lp: pulp.LpProblem) -> None:
        with _stdout_silenced():
            super().createAndConfigureSolver(lp)


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def map_status(sol_status: int, status: int | None = None) -> str:
    """PuLP solution status -> ours: optimal | feasible (stopped early) | infeasible | unbounded | no_solution.

    ``sol_status`` decides (PuLP's ``status`` says Optimal after a time limit); ``status`` only
    tells a proven-infeasible program from one stopped without a solution, as CBC reports
    infeasibility with sol_status "no solution found".
    """
    if sol_status == pulp.LpSolutionOptimal:
        return "optimal"
    if sol_status == pulp.LpSolutionIntegerFeasible:
        return "feasible"
    if sol_status == pulp.LpSolutionInfeasible:
        return "infeasible"
    if sol_status == pulp.LpSolutionUnbounded:
        return "unbounded"
    if status == pulp.LpStatusInfeasible:
        return "infeasible"
    return "no_solution"


def _highs_gap(lp: pulp.LpProblem) -> float | None:
    model = getattr(lp, "solverModel", None)
    if model is None:
        return None
    gap = float(model.getInfo().mip_gap)
    # HiGHS reports an infinite gap for pure LPs and before an incumbent exists.
    return gap if math.isfinite(gap) else None


def _highs_work(lp: pulp.LpProblem) -> int:
    model = getattr(lp, "solverModel", None)
    if model is None:
        return 0
    info = model.getInfo()
    return len(lp.variables()) + max(0, int(info.simplex_iteration_count)) + max(0, int(info.mip_node_count))


def _cbc_gap(log_path: str | None, status: str) -> float | None:
    if log_path is None or not os.path.exists(log_path):
        return None
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    obj = re.search(r"Objective value:\s*([-+0-9.eE]+)", text)
    bound = re.search(r"Lower bound:\s*([-+0-9.eE]+)", text)
    if obj and bound:
        o, b = float(obj.group(1)), float(bound.group(1))
        return abs(o - b) / max(abs(o), 1e-10)
    if status == "optimal" and "Optimal solution found" in text:
        return 0.0
    return None


def single_task(problem: Problem, task: TaskSpec) -> Problem:
    """The problem restricted to one task (for per-task diagnosis)."""
    return Problem(
        tasks=(task,),
        processors=problem.processors,
        memory_budget_mb=problem.memory_budget_mb,
        transfer_latency_ms=problem.transfer_latency_ms,
        transfer_mb_per_ms=problem.transfer_mb_per_ms,
        storage_mb_per_ms=problem.storage_mb_per_ms,
        transitions={},
    )
