"""Scheduling: turn numbers (profiles, candidates) into plans and per-request decisions.

This package never compiles or runs a model; it consumes numbers only.
"""
