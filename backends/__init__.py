"""Backends: compile blocks through TVM for CPU/GPU/DSP/NPU processors, run and profile them, model the rest."""
