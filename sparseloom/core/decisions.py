"""A record of what one engine run decided, in order, so the simulator and the runtime can be compared
decision by decision on the same scenario."""

from __future__ import annotations

from dataclasses import dataclass, field

# A request's route: its task, the option per position (the stitched variant), the processor per block.
RouteKey = tuple[str, tuple[int, ...], tuple[str, ...]]


@dataclass
class Decisions:
    """Filled by a driver as it runs (simulator: ``engine.run(decisions=...)``; runtime:
    ``Runtime(decisions=...)``)."""

    # Per request, in arrival order: its route, or None when admission shed it.
    routes: list[RouteKey | None] = field(default_factory=list)
    # Block digests, in the order their loads began (memory reserved) and their evictions happened.
    loads: list[str] = field(default_factory=list)
    evictions: list[str] = field(default_factory=list)
    # Global-queue policies (Band): every block handed to a processor, as (request's task, block
    # position, processor), in the order the assignments were made.
    assignments: list[tuple[str, int, str]] = field(default_factory=list)

