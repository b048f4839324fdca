"""Every policy by name. A new policy is one module plus one entry in POLICIES."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from scheduler.policies.adaptive_variant import AdaptiveVariantPolicy
from scheduler.policies.band import BandPolicy
from scheduler.policies.single_variant import SingleVariantPolicy
from scheduler.policies.sparseloom import SparseLoomPolicy
from scheduler.policy import Policy

# Each factory takes the shared keyword options: objective, backend, time_limit_s, gap_rel,
# threads, preloader, alternatives_limit.
POLICIES: Mapping[str, Callable[..., Policy]] = MappingProxyType(
    {
        "sparseloom": lambda **o: SparseLoomPolicy(**o),
        "sv-ao-np": lambda **o: SingleVariantPolicy("sv-ao-np", "accuracy", False, **o),
        "sv-ao-p": lambda **o: SingleVariantPolicy("sv-ao-p", "accuracy", True, **o),
        "sv-lo-np": lambda **o: SingleVariantPolicy("sv-lo-np", "latency", False, **o),
        "sv-lo-p": lambda **o: SingleVariantPolicy("sv-lo-p", "latency", True, **o),
        "av-np": lambda **o: AdaptiveVariantPolicy("av-np", False, **o),
        "av-p": lambda **o: AdaptiveVariantPolicy("av-p", True, **o),
        "band-lsf": lambda **o: BandPolicy("band-lsf", True, **o),
        "band-heft": lambda **o: BandPolicy("band-heft", False, **o),
    }
)


def names() -> tuple[str, ...]:
    return tuple(POLICIES)


def create(name: str, **options: Any) -> Policy:
    """The policy called ``name``; ValueError (listing the known names) for an unknown one."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; known: {', '.join(POLICIES)}"
        ) from None
    return factory(**options)
