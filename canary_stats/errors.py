"""The one exception hierarchy of canary_stats.

::

    CanaryStatsError
    ├── InputError            bad input: names the field and what was expected
    │   ├── EventsError       raw events or aggregates that break the data contract
    │   ├── PolicyError       a policy, guardrail or manifest section that cannot be used
    │   └── ManifestError     a release manifest, its lock or a migration that cannot be used
    ├── SourceError           a data source could not deliver (the judge holds)
    │   ├── SourceUnavailable server down, timed out, refused, or not Prometheus at all
    │   └── SourceResponseError  an answer of the wrong shape (a matrix where a vector was due)
    ├── StoreError            the DuckDB store cannot be opened, migrated or written
    │   └── StoreUnreadable   not a store this canary_stats can open: damaged, truncated,
    │                         another format, or a newer schema (never written to)
    ├── BackendError          a rollout backend could not move traffic or deploy a manifest
    └── InsufficientData      too little or untrustworthy data: a *hold*, never an error exit

Every interface maps these classes in one place: the CLI to exit codes (2 for
``InputError``, 3 for ``SourceError`` and ``StoreUnreadable``, 1 otherwise,
``BackendError`` included), the service to HTTP statuses.

Every class survives ``pickle`` (multiprocessing pools, parallel notebooks) with its
message and attributes: an error is rebuilt from its ``args`` and attributes, not by
calling its ``__init__`` again, so a subclass with its own constructor needs nothing more.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "CanaryStatsError",
    "EventsError",
    "InputError",
    "InsufficientData",
    "ManifestError",
    "PolicyError",
    "SourceError",
    "SourceResponseError",
    "SourceUnavailable",
    "StoreError",
    "StoreUnreadable",
]


def _rebuild(cls: type[CanaryStatsError], args: tuple[Any, ...]) -> CanaryStatsError:
    """``cls`` with ``args`` and no ``__init__`` call; pickle then restores the attributes."""
    return cls.__new__(cls, *args)


class CanaryStatsError(Exception):
    """Base class of every error raised by canary_stats."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args): a TypeError for ManifestError(field, message).
        return _rebuild, (type(self), self.args), self.__dict__


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


class ManifestError(InputError):
    """A release manifest, its lock file or a memory migration that cannot be used.

    ``field`` is the YAML path (``spec.model.primary``) or the file; ``line`` the
    1-based line in the manifest when known.
    """

    def __init__(self, field: str, message: str, *, line: int | None = None) -> None:
        self.line = line
        where = f" (line {line})" if line is not None else ""
        super().__init__(field, f"{message}{where}")


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


class StoreUnreadable(StoreError):
    """The file is not a store this canary_stats can open; it is left untouched.

    Damaged or truncated, another format (an SQLite file, random bytes, an empty
    file), or written by a newer canary_stats. A lock held by another process is
    a plain `StoreError`: that passes, this does not.
    """


class BackendError(CanaryStatsError):
    """A rollout backend could not apply an action; ``backend`` names it.

    For a command: ``command`` (as configured, before substitution), ``returncode``
    (None when it did not start or timed out) and the tail of its ``stderr``.
    Not a `SourceError`: the judge's data is fine, the platform refused the change.
    """

    def __init__(
        self,
        backend: str,
        message: str,
        *,
        command: str | None = None,
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend, self.command = backend, command
        self.returncode, self.stderr = returncode, stderr
