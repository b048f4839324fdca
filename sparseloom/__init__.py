"""SparseLoom: run several sparse DNNs at once on heterogeneous edge SoCs."""

from sparseloom.errors import InputError, Problem
from sparseloom.workload import SLO, SoC, Workload, load_workload

__all__ = ["SLO", "InputError", "Problem", "SoC", "Workload", "load_workload"]
__version__ = "0.1.0"
