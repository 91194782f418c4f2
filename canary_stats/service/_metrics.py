"""The service's own Prometheus metrics, in a registry of its own (one per app).

``canary_stats_decision`` also lets a Flagger ``MetricTemplate`` read the verdict
(1 promote, 0 hold, -1 rollback) instead of calling the webhooks.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_DECISION_VALUE = {"promote": 1.0, "hold": 0.0, "rollback": -1.0}


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.verdicts = Counter(
            "canary_stats_verdicts", "Verdicts computed, by decision.", ["decision"], registry=r
        )
        self.deadline_holds = Counter(
            "canary_stats_deadline_holds",
            "Holds answered because the verdict was still being computed at the deadline.",
            registry=r,
        )
        self.compute_seconds = Histogram(
            "canary_stats_compute_seconds",
            "Time to compute one verdict (pull from the source, store, judge).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.source_errors = Counter(
            "canary_stats_source_errors", "Pulls from the metrics source that failed.", registry=r
        )
        self.data_lag = Gauge(
            "canary_stats_data_lag_seconds",
            "Age of the newest canary data at the latest verdict.",
            ["stable", "canary"],
            registry=r,
        )
        self.decision = Gauge(
            "canary_stats_decision",
            "Latest decision: 1 promote, 0 hold, -1 rollback.",
            ["stable", "canary", "stage"],
            registry=r,
        )
        self.active = Gauge(
            "canary_stats_active_releases", "Releases refreshed in the background.", registry=r
        )
        for decision in _DECISION_VALUE:  # expose zeros before the first verdict
            self.verdicts.labels(decision)

    def observe(
        self, stable: str, canary: str, stage: int, decision: str, lag: float | None
    ) -> None:
        self.verdicts.labels(decision).inc()
        self.decision.labels(stable, canary, str(stage)).set(_DECISION_VALUE[decision])
        if lag is not None:
            self.data_lag.labels(stable, canary).set(lag)

    def forget(self, stable: str, canary: str, stage: int) -> None:
        """Drop the series of a release no longer asked about (bounded cardinality)."""
        for gauge, labels in (
            (self.decision, (stable, canary, str(stage))),
            (self.data_lag, (stable, canary)),
        ):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
