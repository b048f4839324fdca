"""Subcommands of the CLI. A new subcommand is one module plus one line here."""

from __future__ import annotations

from types import ModuleType

from sparseloom.commands import (
    calibrate,
    demo,
    plan,
    pool,
    profile,
    run,
    simulate,
    soc,
    stitch,
    sweep,
    switch,
    validate,
)

# Each module has ``register(subparsers)``, which adds its parser and sets ``run``.
COMMANDS: tuple[ModuleType, ...] = (
    demo, validate, soc, pool, stitch, profile, plan, simulate, sweep, switch, run, calibrate,
)
