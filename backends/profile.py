"""Profiles: measured or modelled cost of each (block, processor), plus transfer and load costs.

Units are in the field names: ``latency_ms`` (milliseconds), ``*_bytes``
(bytes). Every number carries ``source`` = ``measured`` (with device,
thread count and TVM version) or ``modelled`` (with what model). The
scheduler reads these numbers; profiles persist as JSON, written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from stitching.atomic import write_json

Source = Literal["measured", "modelled"]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProfileEntry:
    """Latency and memory of one block on one processor."""

    block: str
    digest: str
    processor: str
    latency_ms: float  # median over repeats after warm-up, or the model's estimate
    latency_iqr_ms: float  # inter-quartile range of the repeats (0 when modelled)
    latency_p90_ms: float
    weight_bytes: int
    activation_bytes: int  # peak live activation memory of one run
    flops: float
    pattern: str
    level: float
    source: Source
    device: str  # what measured it, or which model estimated it
    threads: int | None = None
    tvm_version: str | None = None
    executor: str = "tvm"
    repeats: int = 0
    compile_s: float = 0.0  # time spent compiling in this run (0 on a cache hit)
    note: str = ""


@dataclass(frozen=True)
class TransferCost:
    """Moving ``bytes`` of activation from one processor to another."""

    src: str
    dst: str
    bytes: int
    latency_ms: float
    source: Source
    device: str


@dataclass(frozen=True)
class LoadCost:
    """Reading one block's weights from storage into memory."""

    block: str
    digest: str
    bytes: int
    latency_ms: float
    source: Source
    device: str


@dataclass(frozen=True)
class Profile:
    """All costs for one SoC."""

    soc: str
    entries: tuple[ProfileEntry, ...]
    transfers: tuple[TransferCost, ...] = ()
    loads: tuple[LoadCost, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def entry(self, digest: str, processor: str) -> ProfileEntry:
        for e in self.entries:
            if e.digest == digest and e.processor == processor:
                return e
        raise KeyError((digest, processor))

    def latency_ms(self, digest: str, processor: str) -> float:
        return self.entry(digest, processor).latency_ms

    def measured(self) -> tuple[ProfileEntry, ...]:
        return tuple(e for e in self.entries if e.source == "measured")

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "soc": self.soc,
            "meta": self.meta,
            "entries": [asdict(e) for e in self.entries],
            "transfers": [asdict(t) for t in self.transfers],
            "loads": [asdict(x) for x in self.loads],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Profile:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"profile format {data.get('format_version')!r} is not {FORMAT_VERSION}")
        return Profile(
            soc=data["soc"],
            meta=dict(data.get("meta", {})),
            entries=tuple(ProfileEntry(**e) for e in data["entries"]),
            transfers=tuple(TransferCost(**t) for t in data.get("transfers", [])),
            loads=tuple(LoadCost(**x) for x in data.get("loads", [])),
        )

    def save(self, path: Path) -> None:
        write_json(Path(path), self.to_json(), indent=1, sort_keys=True)

    @staticmethod
    def load(path: Path) -> Profile:
        return Profile.from_json(json.loads(Path(path).read_text()))
