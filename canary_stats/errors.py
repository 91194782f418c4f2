"""The one exception hierarchy of canary_stats.

::

    CanaryStatsError
    ├── InputError            bad input: names the field and what was expected
    │   ├── EventsError       raw events or aggregates that break the data contract
    │   └── PolicyError       a policy, guardrail or manifest section that cannot be used
    ├── SourceError           a data source could not deliver (the judge holds)
    │   ├── SourceUnavailable server down, timed out, refused, or not Prometheus at all
    │   └── SourceResponseError  an answer of the wrong shape (a matrix where a vector was due)
    ├── StoreError            the DuckDB store cannot be opened, migrated or written
    └── InsufficientData      too little or untrustworthy data: a *hold*, never an error exit

Every interface maps these classes in one place: the CLI to exit codes (2 for
``InputError``, 3 for ``SourceError``, 1 otherwise), the service to HTTP statuses.
"""

from __future__ import annotations

__all__ = [
    "CanaryStatsError",
    "EventsError",
    "InputError",
    "InsufficientData",
    "PolicyError",
    "SourceError",
    "SourceResponseError",
    "SourceUnavailable",
    "StoreError",
]


class CanaryStatsError(Exception):
    """Base class of every error raised by canary_stats."""


class InputError(CanaryStatsError, ValueError):
    """Input that cannot be used as given.

    ``field`` names the offending field (a column, a manifest path or an option).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class EventsError(InputError):
    """Raw events or aggregates that break the data contract."""


class PolicyError(InputError):
    """A policy, guardrail or rollout plan that cannot be used."""


class InsufficientData(CanaryStatsError):
    """Too little or untrustworthy data to decide; the judge turns this into a hold."""


class SourceError(CanaryStatsError):
    """A data source could not deliver; ``source`` names it (e.g. a Prometheus URL)."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class SourceUnavailable(SourceError):
    """The source is down, too slow, refused us, or is not the kind of server expected."""


class SourceResponseError(SourceError):
    """The source answered, but not in the shape the query asks for."""


class StoreError(CanaryStatsError):
    """The DuckDB store cannot be opened, migrated or written."""
