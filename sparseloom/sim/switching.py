"""Task switches in the simulator: each switch charged per tile from the pool's real layout.

:class:`SwitchModel` replays a task sequence with no I/O. Each registered loading method
(``sparseloom.multitask.replay.METHODS``) says, through its ``model`` and ``model_settle``, what a
switch reads and what stays resident, the same decisions its real ``install`` and ``settle`` take;
pre-loading plans with the scheduler's pre-loader (``scheduler.preload.plan_preload``). The bytes
and read requests come from the pool's layout (``PackedTileStore.runs``: adjacent tiles, and gaps
cheaper to read than a request, form one run, by the replay's own rule). A switch is then charged

    install_ms[method] + sum over its runs of read_curve(run bytes) + tiles read x tile_ms

with three things measured apart from any switch replay, on the storage and code that run it
(:class:`StorageCosts`): the time of one cold read request by its size (``ReadCurve``: random
page-aligned reads from 4 KiB to 1 MB, each after evicting the page cache, through the pool's
read path), the software cost per tile brought in (loading tiles whose pages are already cached),
and each method's fixed cost of a switch that reads nothing (its install, with every byte already
held, in the replay's conditions). Nothing is fitted to the switch times it is
compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sparseloom.multitask.replay import METHODS, PRELOADERS
from stitching.multitask.loading import ReadCurve
from stitching.multitask.preload import TransitionGraph
from stitching.multitask.setting import Setting


@dataclass(frozen=True)
class StorageCosts:
    """What a switch costs on one host's storage: the three measured parameters of the charge."""

    read_curve: ReadCurve
    install_ms: Mapping[str, float]  # per loading method: a switch that reads nothing
    tile_ms: float  # software cost per tile brought in, beyond the storage's time
    max_gap_bytes: int  # the replay's rule for reading a gap rather than issuing one more request
    source: str = "measured on this host, apart from the switches modelled"

    def storage_ms(self, runs: Sequence[int]) -> float:
        """The storage's part: the measured cold read time of each request of these byte sizes."""
        return sum(self.read_curve.read_ms(n) for n in runs)

    def charge_ms(self, method: str, storage_ms: float, tiles: int) -> float:
        """A switch of ``method`` whose reads take ``storage_ms`` and bring in ``tiles`` tiles."""
        return self.install_ms[method] + storage_ms + tiles * self.tile_ms


@dataclass(frozen=True)
class ModelledSwitch:
    src: str
    dst: str
    modelled_ms: float
    storage_ms: float  # the part the storage takes: the measured cold read time of each request
    bytes_read: int  # run bytes, gaps included: what the storage delivers
    reads: int
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

    def file_runs(self, task: str) -> list[int]:
        """The one request that reads ``task``'s monolithic file whole (no tile is brought in one by one)."""
        self.tiles_read = 0
        return [self.monolithic[task].stat().st_size]

    def read(self, digests: Iterable[str]) -> list[int]:
        """Byte sizes of the requests that read the digests not resident; they are resident afterwards."""
        missing = set(digests) - self.resident
        runs = self.pool.runs(missing, self.costs.max_gap_bytes)
        self.resident |= missing
        self.tiles_read = len(missing)
        return [r.nbytes for r in runs]

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
            charge = self.costs.charge_ms(name, storage, self.tiles_read)
            self.graph.observe(src, dst)
            pre = self.method.model_settle(self, dst)
            out.append(ModelledSwitch(src, dst, charge, storage, sum(runs), len(runs), pre))
        return out


def simulate_switches(
    setting: Setting, method: str, sequence: Sequence[str], costs: StorageCosts, budget_bytes: int, preloader: str = "correlated"
) -> list[ModelledSwitch]:
    """The modelled switches of one method on one sequence (see :class:`SwitchModel`)."""
    return SwitchModel(setting, method, costs, budget_bytes, preloader).run(sequence)
