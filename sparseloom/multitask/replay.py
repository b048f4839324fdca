"""Replay a task sequence under four loading methods and measure every switch with real file I/O.

Methods, registered by name in :data:`METHODS` as :class:`LoadingMethod` objects (same model,
same data, same cold page cache before every switch):

* ``monolithic``: each task's whole sparse model (independent mask) is one file, read whole.
* ``independent_differential``: independent masks; read only the tiles the next task lacks.
* ``aligned_differential``: aligned masks; read only the missing tiles.
* ``aligned_preload``: aligned masks; while a task runs, pre-load tiles of likely next tasks
  (learnt online from the switches seen so far) within ``preload_budget_bytes``; the tiles are
  valued by P(next task | current) (``correlated``, the default) or by how often each task is
  switched to (``inflow``). :func:`compare_preloaders` runs both and no pre-loading at a budget that binds.
  ("hot" is the scheduler's word for its frequency x uniqueness ranking, ``scheduler.preload``; the
  in-flow ranking is another thing and has its own name.)

Tiles are read with one ``preadv`` per run into a pre-touched arena; a task then runs from
block-sparse-row tables over the arena (the monolithic baseline: over the buffer its file was read
into), so every method pays its I/O plus a few index operations, and nothing is copied twice.

Switch latency is wall-clock from the switch request until the next task's weights are in place
(read + install), ``source: measured``. Pre-loading happens while the task runs and is reported
apart (bytes and time). Accuracy is measured on the held-out split with the weights the replay
installed the first time each task runs (copied then, evaluated after the last timed switch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm import tqdm

from scheduler.preload import plan_preload
from stitching.multitask.heads import (
    DRIVING_HEADS,
    Head,
    head_accuracy,
    head_labels,
    head_norm,
)
from stitching.multitask.loading import (
    ActiveWeights,
    LayerTiles,
    TileCache,
    evict_page_cache,
    head_tiles,
    modelled_load_ms,
    monolithic_runnable,
)
from stitching.multitask.manifest import HeadManifest, monolithic_head
from stitching.multitask.preload import PreloadPlan, TransitionGraph
from stitching.multitask.setting import Setting
from stitching.multitask.store import read_file, safetensors_views

if TYPE_CHECKING:
    from sparseloom.sim.switching import Request, SwitchModel

# What ``aligned_preload`` values a tile by: P(next task | current) from the transition graph
# (correlation-aware), or how often each task is switched to, regardless of the current one (inflow).
PRELOADERS: tuple[str, ...] = ("correlated", "inflow")
DRIVING_CYCLE: tuple[str, ...] = ("car", "traffic_light", "car", "obstacle", "person")


def driving_sequence(cycles: int) -> list[str]:
    """The driving scenario car -> traffic_light -> car -> obstacle -> person, repeated ``cycles`` times."""
    return list(DRIVING_CYCLE) * cycles


def markov_sequence(
    names: Sequence[str],
    steps: int,
    seed: int,
    concentration: float = 0.5,
    matrix: Mapping[str, Mapping[str, float]] | None = None,
) -> list[str]:
    """A random walk with no self-transitions on ``matrix`` (rows: from, columns: to), or, when none
    is given, on a seeded random matrix with Dirichlet(``concentration``) rows."""
    rng = np.random.default_rng(seed)
    n = len(names)
    if matrix is None:
        probs = rng.dirichlet([concentration] * n, size=n)
    else:
        probs = np.array([[float(matrix.get(a, {}).get(b, 0.0)) for b in names] for a in names])
        probs[probs.sum(axis=1) == 0] = 1.0  # a task with no row: uniform
    np.fill_diagonal(probs, 0.0)
    probs[probs.sum(axis=1) == 0] = 1.0
    np.fill_diagonal(probs, 0.0)
    matrix_arr = probs / probs.sum(axis=1, keepdims=True)
    state = int(rng.integers(n))
    out = [names[state]]
    for _ in range(steps - 1):
        state = int(rng.choice(n, p=matrix_arr[state]))
        out.append(names[state])
    return out


@dataclass(frozen=True)
class SwitchRecord:
    src: str
    dst: str
    latency_ms: float  # measured: read + install
    read_ms: float  # measured: the file I/O part
    bytes_loaded: int
    reads: int  # read requests (byte runs) on the critical path
    tiles_loaded: int  # tiles brought in on the critical path (0 for a whole-file read)
    modelled_ms: float  # from the bandwidth and per-read latency parameters
    io_limit_ms: float  # bytes_loaded / the read bandwidth measured in the same round
    preload_bytes: int
    preload_ms: float  # measured, off the critical path
    resident_bytes: int


@dataclass(frozen=True)
class Fetched:
    """What bringing a task in took: bytes read, the milliseconds of the reading, read requests, tiles."""

    nbytes: int
    read_ms: float
    reads: int
    tiles: int


def max_gap_bytes(read_latency_ms: float, bandwidth_gbps: float) -> int:
    """Bytes one more read request costs as much time as: gaps up to this are read, not split."""
    return int(read_latency_ms * 1e-3 * bandwidth_gbps * 1e9)


def _p95(values: Sequence[float]) -> float:
    return float(np.percentile(values, 95)) if values else 0.0


class _Replayer:
    def __init__(
        self,
        setting: Setting,
        method: str,
        bandwidth_gbps: float,
        preload_budget_bytes: int,
        read_latency_ms: float,
        preloader: str = "correlated",
        measure_accuracy: bool = True,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
        self.method: LoadingMethod = METHODS[method]
        if preloader not in PRELOADERS:
            raise ValueError(f"unknown preloader {preloader!r}; known: {list(PRELOADERS)}")
        self.preloader = preloader
        self.measure_accuracy = measure_accuracy
        self.installed: dict[str, tuple[dict[str, LayerTiles], Head]] = {}
        self.s = setting
        self.bandwidth_gbps = bandwidth_gbps
        self.read_latency_ms = read_latency_ms
        self.max_gap_bytes = max_gap_bytes(read_latency_ms, bandwidth_gbps)
        self.budget = preload_budget_bytes
        self.manifests: dict[str, HeadManifest] = setting.manifests[self.method.family]
        self.pool = setting.pool
        self.active = ActiveWeights(setting.grids)
        self.cache = TileCache(self.pool, setting.tile_size)
        self.tasks = {t: head_tiles(m, self.cache) for t, m in self.manifests.items()}
        self.graph = TransitionGraph(self.manifests)
        self.files = setting.pool.files() + list(setting.monolithic.values())
        self.accuracy: dict[str, float] = {}
        self.mono_bytes = 0

    def _install(self, task: str) -> Fetched:
        """Bring ``task`` in."""
        return self.method.install(self, task)

    def _measure_accuracy(self, task: str) -> None:
        """Keep a copy of the weights the replay installed for ``task`` (first visit) to evaluate later.

        Evaluating now would run torch between timed switches, and its worker threads keep
        spinning for a while afterwards, slowing the next switches' I/O on a small machine
        (measured: about 1.9-3.0 ms against 1.3-1.7 ms per aligned switch on this 2-core host).
        """
        if not self.measure_accuracy or task in self.installed or self.active.head is None:
            return
        layers = {
            n: LayerTiles(lt.rows, lt.cols, lt.data[lt.index], np.arange(len(lt.index)), tuple((r, c, t.copy()) for r, c, t in lt.edges))
            for n, lt in self.active.layers.items()
        }
        self.installed[task] = (layers, tuple(a.copy() for a in self.active.head))

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy of every task on the weights its first visit installed (after :meth:`run`)."""
        check = ActiveWeights(self.s.grids)
        for task, (layers, head) in self.installed.items():
            check.install(layers, head)
            feats = self.s.model.features(check.dense(), head_norm(head), self.s.split.x_test)
            self.accuracy[task] = head_accuracy(feats, head_labels(task, self.s.split.d_test), head)
        return self.accuracy

    def _after_switch(self, task: str) -> tuple[int, float]:
        """Drop what is no longer wanted; with pre-loading, read the plan now (off the critical path)."""
        return self.method.settle(self, task)

    def resident_bytes(self) -> int:
        return self.method.resident_bytes(self)

    def run(self, sequence: Sequence[str]) -> list[SwitchRecord]:
        first = sequence[0]
        evict_page_cache(self.files)
        self._install(first)
        self._measure_accuracy(first)
        self._after_switch(first)
        records: list[SwitchRecord] = []
        for src, dst in pairwise(sequence):
            if src == dst:
                continue
            evict_page_cache(self.files)
            start = time.perf_counter()
            got = self._install(dst)
            latency_ms = (time.perf_counter() - start) * 1e3
            self.graph.observe(src, dst)
            self._measure_accuracy(dst)
            pre_bytes, pre_ms = self._after_switch(dst)
            records.append(
                SwitchRecord(
                    src, dst, latency_ms, got.read_ms, got.nbytes, got.reads, got.tiles,
                    modelled_load_ms(got.nbytes, self.bandwidth_gbps, self.read_latency_ms, got.reads),
                    modelled_load_ms(got.nbytes, self.bandwidth_gbps),
                    pre_bytes, pre_ms, self.resident_bytes(),
                )
            )
        return records


class LoadingMethod(Protocol):
    """How a switch brings the next task's weights in, and what it keeps or reads afterwards."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str:
        """Whose masks' tiles it reads: ``independent`` or ``aligned``."""
        ...

    def install(self, r: _Replayer, task: str) -> Fetched:
        """Read ``task``'s weights in (timed)."""
        ...

    def settle(self, r: _Replayer, task: str) -> tuple[int, float]:
        """After the switch, off the critical path: bytes and milliseconds pre-loaded."""
        ...

    def resident_bytes(self, r: _Replayer) -> int: ...

    def model(self, m: SwitchModel, task: str) -> list[Request]:
        """The simulator's side of :meth:`install`: the byte sizes of the read requests on the critical
        path, from the pool's layout, with the modelled resident set updated as the replay's would be."""
        ...

    def model_settle(self, m: SwitchModel, task: str) -> int:
        """The simulator's side of :meth:`settle`: bytes pre-loaded."""
        ...


def preload_plan(
    manifests: Mapping[str, HeadManifest], graph: TransitionGraph, task: str, preloader: str, budget_bytes: int
) -> PreloadPlan:
    """What pre-loading reads while ``task`` runs: the scheduler's correlation-aware pre-loader, on
    P(next | ``task``) (``correlated``) or on where switches go overall (``inflow``)."""
    nbytes = {d: n for m in manifests.values() for d, n in m.nbytes.items()}
    return plan_preload(
        task,
        graph.next_probabilities(task if preloader == "correlated" else None),
        {t: m.digests() for t, m in manifests.items()}, nbytes, budget_bytes,
    )


@dataclass(frozen=True)
class Monolithic:
    """Each task's whole sparse model (independent mask) is one file, read whole."""

    name: str = "monolithic"
    family: str = "independent"

    def install(self, r: _Replayer, task: str) -> Fetched:
        start = time.perf_counter()
        raw = read_file(r.s.monolithic[task])
        read_ms = (time.perf_counter() - start) * 1e3
        tensors = safetensors_views(raw)
        r.active.install(monolithic_runnable(tensors, r.s.grids), monolithic_head(tensors))
        r.mono_bytes = sum(t.nbytes for t in tensors.values())
        return Fetched(len(raw), read_ms, 1, 0)

    def settle(self, r: _Replayer, task: str) -> tuple[int, float]:
        return 0, 0.0

    def resident_bytes(self, r: _Replayer) -> int:
        return r.mono_bytes

    def model(self, m: SwitchModel, task: str) -> list[Request]:
        return m.file_runs(task)

    def model_settle(self, m: SwitchModel, task: str) -> int:
        return 0


@dataclass(frozen=True)
class Differential:
    """Only the tiles the next task lacks are read; the rest are dropped after the switch."""

    name: str
    family: str

    def install(self, r: _Replayer, task: str) -> Fetched:
        tiles = r.tasks[task]
        runs = r.cache.runs(tiles.ids, r.max_gap_bytes)
        start = time.perf_counter()
        loaded = r.cache.load_runs(runs)
        read_ms = (time.perf_counter() - start) * 1e3
        r.active.install(r.cache.runnable(tiles, r.s.grids), r.cache.head(tiles))
        return Fetched(loaded, read_ms, len(runs), sum(len(run.positions) for run in runs))

    def settle(self, r: _Replayer, task: str) -> tuple[int, float]:
        r.cache.keep_only(r.tasks[task].ids)
        return 0, 0.0

    def resident_bytes(self, r: _Replayer) -> int:
        return r.cache.nbytes()

    def model(self, m: SwitchModel, task: str) -> list[Request]:
        return m.read(m.manifests[task].digests())

    def model_settle(self, m: SwitchModel, task: str) -> int:
        m.keep(m.manifests[task].digests())
        return 0


@dataclass(frozen=True)
class Preloading(Differential):
    """Differential, and while the task runs, the tiles of likely next tasks are read within the budget."""

    def settle(self, r: _Replayer, task: str) -> tuple[int, float]:
        plan = preload_plan(r.manifests, r.graph, task, r.preloader, r.budget)
        planned = r.cache.ids(plan.digests)
        r.cache.keep_only(np.concatenate([r.tasks[task].ids, planned]))
        evict_page_cache(r.files)
        start = time.perf_counter()
        got = r.cache.load(planned, r.max_gap_bytes)
        return got, (time.perf_counter() - start) * 1e3

    def model_settle(self, m: SwitchModel, task: str) -> int:
        plan = preload_plan(m.manifests, m.graph, task, m.preloader, m.budget)
        needed = m.manifests[task].digests()
        m.keep(needed | plan.digests)
        return sum(r.nbytes for r in m.read(plan.digests))


# The loading methods by name, in the order reports list them.
METHODS: Mapping[str, LoadingMethod] = MappingProxyType({m.name: m for m in (
    Monolithic(),
    Differential("independent_differential", "independent"),
    Differential("aligned_differential", "aligned"),
    Preloading("aligned_preload", "aligned"),
)})


def replay(
    setting: Setting,
    method: str,
    sequence: Sequence[str],
    bandwidth_gbps: float,
    preload_budget_bytes: int,
    read_latency_ms: float = 0.0,
    preloader: str = "correlated",
    measure_accuracy: bool = True,
) -> tuple[list[SwitchRecord], dict[str, float]]:
    """Switch records and per-task accuracy (measured on the installed weights) for one method."""
    r = _Replayer(setting, method, bandwidth_gbps, preload_budget_bytes, read_latency_ms, preloader, measure_accuracy)
    return r.run(sequence), r.evaluate()


def measure_plan_ms(setting: Setting, repeats: int = 5) -> float:
    """The cost of working out a switch's runs, per tile missing (median; measured): each aligned
    task's runs (:meth:`TileCache.runs`) worked out with nothing held, less the same with the task's
    tiles held (nothing missing), divided by the task's tiles. A switch pays it before its first
    read, for every tile it lacks; what it costs with nothing missing is in the fixed cost."""
    r = _Replayer(setting, "aligned_differential", 1.0, 0, 0.0, measure_accuracy=False)
    per_tile: list[float] = []
    for _ in range(repeats):
        for tiles in r.tasks.values():
            r.cache.keep_only(np.zeros(0, dtype=np.int64))
            start = time.perf_counter()
            r.cache.runs(tiles.ids, r.max_gap_bytes)
            lacking = time.perf_counter() - start
            r.cache.load(tiles.ids)  # the task's own tiles: then none is missing
            start = time.perf_counter()
            r.cache.runs(tiles.ids, r.max_gap_bytes)
            holding = time.perf_counter() - start
            per_tile.append(max(0.0, lacking - holding) * 1e3 / max(len(tiles.ids), 1))
    return float(np.median(per_tile))


def measure_install_ms(setting: Setting, plan_ms: float = 0.0, switches: int = 64) -> dict[str, float]:
    """Per loading method, the fixed cost of a switch: what it takes beyond its reads and, at
    ``plan_ms`` per tile missing (:func:`measure_plan_ms`), working out its runs (median; measured),
    in the replay's own loop, so that the work between switches (dropping, planning, pre-loading,
    evicting the page cache) leaves the CPU's caches as a replayed switch finds them.
    Measured in isolation, back to back, the same installs take half as long (0.07 against 0.15 ms
    on digits_resnet18 here). The sequence is the tasks in name order, cycled until ``switches``
    switches follow the first, loading, cycle: not a sequence the study models. The median of 8
    moved by up to 2x between rounds, that of 16 by 20-40% on switches that read nothing (0.15-0.2
    ms); 64 cost about 2 s per round here, most of it monolithic loading. Pre-loading runs with a
    budget that holds every tile, so after the first cycle its switches read nothing at all."""
    out: dict[str, float] = {}
    for name in METHODS:
        tasks = sorted(setting.manifests[METHODS[name].family])
        everything = sum(m.total_bytes() for m in setting.manifests[METHODS[name].family].values())
        cycles = 1 + -(-switches // len(tasks))
        records, _ = replay(setting, name, tasks * cycles, 1.0, everything, 0.0, "correlated", False)
        out[name] = float(np.median([r.latency_ms - r.read_ms - r.tiles_loaded * plan_ms for r in records[len(tasks) :]]))
    return out


def measure_tile_ms(setting: Setting, repeats: int = 3) -> float:
    """The software cost of bringing in one tile (median per tile; measured): each aligned task's runs
    read into an empty tile cache with the pool's pages already in the page cache, so no storage
    request waits, less the time the same requests take into one scratch buffer (the copy out of the
    page cache is part of every cold request, so the read curve already holds it), divided by the
    tiles loaded. It is what a switch pays per tile read on top of the storage's time per request
    (claiming a slot, one buffer in the scatter list); working out the runs is :func:`measure_plan_ms`."""
    r = _Replayer(setting, "aligned_differential", 1.0, 0, 0.0, measure_accuracy=False)
    empty = np.zeros(0, dtype=np.int64)
    per_tile: list[float] = []
    for _ in range(repeats):
        for tiles in r.tasks.values():
            r.cache.keep_only(empty)
            setting.pool.read(setting.pool.digests())  # warm the page cache
            runs = r.cache.runs(tiles.ids, r.max_gap_bytes)
            start = time.perf_counter()
            setting.pool.read_raw(runs)
            raw = time.perf_counter() - start
            start = time.perf_counter()
            r.cache.load_runs(runs)
            loaded = time.perf_counter() - start
            per_tile.append(max(0.0, loaded - raw) * 1e3 / max(len(tiles.ids), 1))
    return float(np.median(per_tile))


def _median_per_transition_ratio(records: Sequence[SwitchRecord]) -> float | None:
    """Sum over switches that read of their transition's median switch time, over their I/O limit."""
    by: dict[tuple[str, str], list[SwitchRecord]] = {}
    for r in records:
        if r.bytes_loaded > 0:
            by.setdefault((r.src, r.dst), []).append(r)
    limit_ms = sum(r.io_limit_ms for rs in by.values() for r in rs)
    if limit_ms <= 0:
        return None
    return sum(float(np.median([r.latency_ms for r in rs])) * len(rs) for rs in by.values()) / limit_ms


def summarise(records: Sequence[SwitchRecord], bandwidth_gbps: float) -> dict[str, Any]:
    lat = [r.latency_ms for r in records]
    io = [(r.latency_ms, r.read_ms, r.io_limit_ms) for r in records if r.bytes_loaded > 0]
    large = [(t, rd, b) for (t, rd, b), r in zip(io, [r for r in records if r.bytes_loaded > 0], strict=True) if r.bytes_loaded >= 1e6]
    limit_ms = sum(b for _, _, b in io)
    return {
        "switches": len(records),
        "switch_latency_ms": {"mean": float(np.mean(lat)), "p95": _p95(lat), "median": float(np.median(lat)), "source": "measured"},
        "modelled_switch_ms": {
            "mean": float(np.mean([r.modelled_ms for r in records])),
            "source": "modelled: bytes / bandwidth + reads x read latency",
            "bandwidth_gbps": bandwidth_gbps,
        },
        "reads_per_switch": float(np.mean([r.reads for r in records])),
        "bytes_loaded_per_switch": float(np.mean([r.bytes_loaded for r in records])),
        "preload_bytes_per_switch": float(np.mean([r.preload_bytes for r in records])),
        "preload_ms_mean": float(np.mean([r.preload_ms for r in records])),
        "resident_memory_mb": {
            "mean": float(np.mean([r.resident_bytes for r in records])) / 1e6,
            "max": max(r.resident_bytes for r in records) / 1e6,
            "note": "tiles/model held in memory besides the dense runtime buffers, which every method has",
        },
        # Measured switch time over the I/O limit (bytes / read bandwidth measured in the same round).
        "io_limit_ratio": (sum(t for t, _, _ in io) / limit_ms) if limit_ms > 0 else None,
        # The same for the reading alone (without installing the tiles into the runnable weights).
        "read_limit_ratio": (sum(r for _, r, _ in io) / limit_ms) if limit_ms > 0 else None,
        "read_ms_mean": float(np.mean([r.read_ms for r in records])),
        # Robust to load from other processes: median per-switch ratio over switches reading >= 1 MB.
        "io_limit_ratio_median_large": float(np.median([t / b for t, _, b in large])) if large else None,
        "read_limit_ratio_median_large": float(np.median([rd / b for _, rd, b in large])) if large else None,
        # Robust to load from other processes: each distinct transition A -> B at its median switch time.
        "io_limit_ratio_median_per_transition": _median_per_transition_ratio(records),
        # Measured switch time over the modelled one (bandwidth + per-read latency), switches that read.
        "model_ratio": (
            sum(r.latency_ms for r in records if r.bytes_loaded > 0)
            / sum(r.modelled_ms for r in records if r.bytes_loaded > 0)
            if any(r.bytes_loaded > 0 for r in records)
            else None
        ),
        "per_switch": [r.__dict__ for r in records],
    }


def driving_to_heads(sequence: Sequence[str]) -> list[str]:
    return [DRIVING_HEADS[name] for name in sequence]


def run_sequences(
    setting: Setting,
    sequences: dict[str, list[str]],
    bandwidth_gbps: float,
    preload_budget_bytes: int,
    repeats: int = 3,
    read_latency_ms: float = 0.0,
    remeasure_gbps: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """All methods on all sequences (in model task names), ``repeats`` rounds with methods interleaved.

    Interleaving spreads load from other processes over every method alike; the switch records of
    all rounds are pooled. Speed-ups are given on the mean and on the median switch latency. With
    ``remeasure_gbps`` the read bandwidth is measured again before each round and that round's
    I/O limits use it, so a change of load between the measurement and the replay does not
    skew the ratio either way.
    """
    out: dict[str, Any] = {}
    for name, seq in sequences.items():
        records: dict[str, list[SwitchRecord]] = {m: [] for m in METHODS}
        last: dict[str, _Replayer] = {}
        rounds_gbps: list[float] = []
        for _ in tqdm(range(repeats), desc=f"replay {name}", file=sys.stderr, leave=False):
            gbps = remeasure_gbps() if remeasure_gbps is not None else bandwidth_gbps
            rounds_gbps.append(gbps)
            for method in METHODS:
                last[method] = _Replayer(setting, method, gbps, preload_budget_bytes, read_latency_ms)
                records[method].extend(last[method].run(seq))
        # Accuracy after every timed switch: torch's worker threads would slow the switches after it.
        accuracy = {m: r.evaluate() for m, r in last.items()}
        methods = {m: summarise(records[m], float(np.median(rounds_gbps))) | {"accuracy": accuracy[m]} for m in METHODS}
        for method in METHODS:
            methods[method]["switch_latency_ms"]["mean_per_round"] = _round_means(records[method], repeats)
        mono = methods[Monolithic.name]["switch_latency_ms"]
        for m in methods.values():
            m["speedup_vs_monolithic"] = {
                "mean": mono["mean"] / m["switch_latency_ms"]["mean"],
                "median": mono["median"] / m["switch_latency_ms"]["median"],
                "source": "measured",
            }
        out[name] = {"sequence": seq, "repeats": repeats, "bandwidth_gbps_per_round": rounds_gbps, "methods": methods}
    return out


def _round_means(records: Sequence[SwitchRecord], repeats: int) -> list[float]:
    """Mean switch latency of each round (the rounds' records are pooled in order, equal in number)."""
    per = len(records) // repeats
    return [float(np.mean([r.latency_ms for r in records[i * per : (i + 1) * per]])) for i in range(repeats)] if per else []


def differential_bytes(manifests: Mapping[str, HeadManifest]) -> dict[tuple[str, str], int]:
    """Bytes a switch A -> B reads with nothing pre-loaded, for every ordered pair of tasks."""
    return {
        (a, b): sum(mb.nbytes[d] for d in mb.digests() - ma.digests())
        for a, ma in manifests.items()
        for b, mb in manifests.items()
        if a != b
    }


def compare_preloaders(
    setting: Setting,
    sequences: dict[str, list[str]],
    bandwidth_gbps: float,
    budget_bytes: int,
    repeats: int = 3,
    read_latency_ms: float = 0.0,
    on_round: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Aligned masks at a pre-load budget that binds: no pre-loading, in-flow, correlation-aware, each
    against monolithic loading replayed in the same round (the storage drifts between rounds, so a
    speed-up is taken round by round and the median of the rounds reported).
    ``on_round`` is called before each round (the study measures the storage's costs then)."""
    out: dict[str, Any] = {"budget_mb": budget_bytes / 1e6}
    choices = (
        ("monolithic", "monolithic", "correlated"),
        ("none", "aligned_differential", "correlated"),
        *((p, "aligned_preload", p) for p in PRELOADERS),
    )
    for name, seq in sequences.items():
        records: dict[str, list[SwitchRecord]] = {label: [] for label, _, _ in choices}
        for _ in tqdm(range(repeats), desc=f"preloaders {name}", file=sys.stderr, leave=False):
            if on_round is not None:
                on_round()
            for label, method, preloader in choices:
                got, _ = replay(setting, method, seq, bandwidth_gbps, budget_bytes, read_latency_ms, preloader, False)
                records[label].extend(got)
        out[name] = {
            label: {
                "switch_latency_ms": {
                    "mean": float(np.mean([r.latency_ms for r in rs])),
                    "median": float(np.median([r.latency_ms for r in rs])),
                    "p95": _p95([r.latency_ms for r in rs]),
                    "mean_per_round": _round_means(rs, repeats),
                    "source": "measured",
                },
                "bytes_loaded_per_switch": float(np.mean([r.bytes_loaded for r in rs])),
                "preload_bytes_per_switch": float(np.mean([r.preload_bytes for r in rs])),
                "resident_memory_mb_max": max(r.resident_bytes for r in rs) / 1e6,
            }
            for label, rs in records.items()
        }
        mono = out[name]["monolithic"]["switch_latency_ms"]["mean_per_round"]
        for m in out[name].values():
            per_round = [a / b for a, b in zip(mono, m["switch_latency_ms"]["mean_per_round"], strict=True)]
            m["speedup_vs_monolithic"] = {"per_round": per_round, "median_of_rounds": float(np.median(per_round))}
    return out


def compare_layouts(setting: Setting, repeats: int = 3) -> dict[str, Any]:
    """Cold-read each aligned task's full tile set from the pool: in coalesced runs (one ``preadv`` per
    run of adjacent tiles, as every switch reads), and with one read request per tile."""
    pool = setting.pool
    files = pool.files()
    ways: dict[str, Callable[[frozenset[str]], object]] = {
        "coalesced": pool.read,
        "read_per_tile": lambda digests: [pool.read([d]) for d in sorted(digests)],
    }
    result: dict[str, Any] = {}
    for label, read in ways.items():
        times: list[float] = []
        for _ in range(repeats):
            for m in setting.manifests["aligned"].values():
                evict_page_cache(files)
                start = time.perf_counter()
                read(m.digests())
                times.append((time.perf_counter() - start) * 1e3)
        result[label] = {"load_ms_median": float(np.median(times)), "source": "measured"}
    result["coalesced_speedup"] = result["read_per_tile"]["load_ms_median"] / result["coalesced"]["load_ms_median"]
    return result


def default_sequences(cycles: int = 6, markov_steps: int = 40, seed: int = 0) -> dict[str, list[str]]:
    names = sorted(DRIVING_HEADS)
    return {
        "driving": driving_to_heads(driving_sequence(cycles)),
        "markov": driving_to_heads(markov_sequence(names, markov_steps, seed)),
    }
