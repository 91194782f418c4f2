"""Data sources: synthetic traffic now; Prometheus and files read into the same contracts."""

from .synthetic import Regression, Workload, generate_events, generate_tasks

__all__ = ["Regression", "Workload", "generate_events", "generate_tasks"]
