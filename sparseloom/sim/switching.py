"""Task switches in the simulator: each switch charged per tile from the pool's real layout.

:class:`SwitchModel` replays a task sequence with no I/O. Each registered loading method
(``sparseloom.multitask.replay.METHODS``) says, through its ``model`` and ``model_settle``, what a
switch reads and what stays resident, the same decisions its real ``install`` and ``settle`` take;
pre-loading plans with the scheduler's pre-loader (``scheduler.preload.plan_preload``). The bytes
and read requests come from the pool's layout (``PackedTileStore.runs``: adjacent tiles, and gaps
cheaper to read than a request, form one run, by the replay's own rule). The replay announces every
run of a pack file (``POSIX_FADV_WILLNEED``) before it waits on any, so the storage has them all in
flight at once and serves them as one stream: a batch of requests costs the read curve at its total
bytes, not the sum of each request's cold latency. The per-tile work (claiming a slot, one scatter
buffer) runs while those reads are in flight, so the longer of the two counts. A switch is charged

    install_ms[method] + tiles read x plan_ms
                       + max(sum over its batches of read_curve(batch bytes), tiles read x tile_ms)

(measured on digits_resnet18: summing each request's own cold time and the tile work on top
overstated differential switches by 20-45%; the storage's time for the same requests one after
another came to 0.89-0.98x the switch time they were part of).

with four things measured apart from any switch replay, on the storage and code that run it
(:class:`StorageCosts`): the time of one cold read request by its size (``ReadCurve``: random
page-aligned reads from 4 KiB to 16 MB, each after evicting the page cache, through the pool's
read path), the software cost per tile brought in (loading tiles whose pages are already cached,
less the same requests into one buffer), the cost of working out the runs per tile missing (done
before the first read, so it adds; ``measure_plan_ms``), and each method's fixed cost of a switch:
what a switch takes beyond its reads and its planning, in the replay's own loop on a calibration
sequence that is not modelled (``sparseloom.multitask.replay.measure_install_ms``). Nothing is
fitted to the switch times it is compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from sparseloom.multitask.replay import METHODS, PRELOADERS
from stitching.multitask.loading import ReadCurve
from stitching.multitask.preload import TransitionGraph
from stitching.multitask.setting import Setting


@dataclass(frozen=True)
class Request:
    """One read request of a switch: ``nbytes`` from the file ``batch``; the requests of one file are
    announced together and in flight at once."""

    batch: str
    nbytes: int


@dataclass(frozen=True)
class StorageCosts:
    """What a switch costs on one host's storage: the three measured parameters of the charge."""

    read_curve: ReadCurve
    install_ms: Mapping[str, float]  # per loading method: a switch that reads nothing
    tile_ms: float  # software cost per tile brought in, beyond the storage's time
    max_gap_bytes: int  # the replay's rule for reading a gap rather than issuing one more request
    plan_ms: float = 0.0  # working out a switch's runs, per tile missing (before the first read)
    source: str = "measured on this host, apart from the switches modelled"

    def storage_ms(self, requests: Sequence[Request]) -> float:
        """The storage's part: per batch of requests in flight together, the measured cold read time
        of their total bytes."""
        total: dict[str, int] = {}
        for r in requests:
            total[r.batch] = total.get(r.batch, 0) + r.nbytes
        return sum(self.read_curve.read_ms(n) for n in total.values())

    def serial_ms(self, requests: Sequence[Request]) -> float:
        """The storage's time for the same requests one after another, each at its own cold time."""
        return sum(self.read_curve.read_ms(r.nbytes) for r in requests)

    def charge_ms(self, method: str, storage_ms: float, tiles: int) -> float:
        """A switch of ``method`` whose reads take ``storage_ms`` and bring in ``tiles`` tiles."""
        return self.install_ms[method] + tiles * self.plan_ms + max(storage_ms, tiles * self.tile_ms)


@dataclass(frozen=True)
class ModelledSwitch:
    src: str
    dst: str
    modelled_ms: float
    storage_ms: float  # the part the storage takes: its requests in flight together, per file
    serial_ms: float  # the storage's time for the same requests one after another
    # The storage's time for all the switch's bytes in one request: the I/O limit on this storage,
    # for a switch that reads these bytes from wherever they lie.
    one_request_ms: float
    bytes_read: int  # run bytes, gaps included: what the storage delivers
    reads: int
    tiles: int  # tiles brought in
    preload_bytes: int


class SwitchModel:
    """The modelled state of one method's replay: resident tiles, the transition graph, the budget."""

    def __init__(self, setting: Setting, method: str, costs: StorageCosts, budget_bytes: int, preloader: str = "correlated") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
        if preloader not in PRELOADERS:
            raise ValueError(f"unknown preloader {preloader!r}; known: {list(PRELOADERS)}")
        self.method = METHODS[method]
        self.costs = costs
        self.budget = budget_bytes
        self.preloader = preloader
        self.manifests = setting.manifests[self.method.family]
        self.pool = setting.pool
        self.monolithic = setting.monolithic
        self.graph = TransitionGraph(self.manifests)
        self.resident: set[str] = set()
        self.tiles_read = 0  # tiles brought in by the last read

    def file_runs(self, task: str) -> list[Request]:
        """The one request that reads ``task``'s monolithic file whole (no tile is brought in one by one)."""
        self.tiles_read = 0
        path: Path = self.monolithic[task]
        return [Request(str(path), path.stat().st_size)]

    def read(self, digests: Iterable[str]) -> list[Request]:
        """The requests that read the digests not resident; they are resident afterwards."""
        missing = set(digests) - self.resident
        runs = self.pool.runs(missing, self.costs.max_gap_bytes)
        self.resident |= missing
        self.tiles_read = len(missing)
        return [Request(r.pack, r.nbytes) for r in runs]

    def keep(self, digests: Iterable[str]) -> None:
        self.resident &= set(digests)

    def run(self, sequence: Sequence[str]) -> list[ModelledSwitch]:
        """Each switch of ``sequence`` charged as the replay would perform it (the first task is loaded
        before the first switch, as in the replay)."""
        name = self.method.name
        self.method.model(self, sequence[0])
        self.method.model_settle(self, sequence[0])
        out: list[ModelledSwitch] = []
        for src, dst in pairwise(sequence):
            if src == dst:
                continue
            runs = self.method.model(self, dst)
            storage = self.costs.storage_ms(runs)
            tiles = self.tiles_read
            charge = self.costs.charge_ms(name, storage, tiles)
            self.graph.observe(src, dst)
            pre = self.method.model_settle(self, dst)
            nbytes = sum(r.nbytes for r in runs)
            one = self.costs.read_curve.read_ms(nbytes)
            out.append(ModelledSwitch(src, dst, charge, storage, self.costs.serial_ms(runs), one, nbytes, len(runs), tiles, pre))
        return out


def simulate_switches(
    setting: Setting, method: str, sequence: Sequence[str], costs: StorageCosts, budget_bytes: int, preloader: str = "correlated"
) -> list[ModelledSwitch]:
    """The modelled switches of one method on one sequence (see :class:`SwitchModel`)."""
    return SwitchModel(setting, method, costs, budget_bytes, preloader).run(sequence)
