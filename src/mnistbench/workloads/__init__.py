"""Workloads (dataset + model + validation target + budget, AlgoPerf's notion) and tuning protocols."""

from .registry import WORKLOADS, Workload, apply_workload, resolve_workload
from .search import Dimension, sample_points
from .tuning import Prune, Select, Tuning, choose_best, should_prune

__all__ = ["WORKLOADS", "Workload", "apply_workload", "resolve_workload", "Dimension", "sample_points",
           "Prune", "Select", "Tuning", "choose_best", "should_prune"]
