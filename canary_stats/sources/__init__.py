"""Data sources: synthetic traffic now; Prometheus and files read into the same contracts."""

from .files import load_events
from .synthetic import Regression, Workload, generate_events, generate_tasks

__all__ = ["Regression", "Workload", "generate_events", "generate_tasks", "load_events"]
