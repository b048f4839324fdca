"""Scheduling: turn numbers (profiles, candidates) into plans and per-request decisions.

This package never compiles or runs a model; it consumes numbers only.

- ``problem``: what is planned over (tasks, block options, processors, budgets);
- ``plan`` / ``policy``: what a policy produces, and the protocol every policy implements;
- ``registry``: every policy by name (``names()``, ``create(name, **options)``);
- ``ilp``: the joint stitched-variant selection and placement program (PuLP; HiGHS or CBC);
- ``planner``: one ILP solve turned into a full plan (alternatives, residency, pre-loading,
  diagnosis and best-effort routes when infeasible);
- ``routes``: route arithmetic and the objectives, shared by every planner;
- ``dispatch``: per-request decisions from the plan and live queues;
- ``preload``: pre-loading rankings under a memory budget;
- ``explain``: why a problem is infeasible;
- ``synthetic``: seeded synthetic problems for tests and benchmarks;
- ``policies/``: one module per policy.
"""
