"""Whether a release was ever seen, so a misspelt stable is a 404 and not an endless hold.

Only the stable release is checked: it serves most of the traffic, so a stable
that nobody registered, that has no stored data and (with a Prometheus source) no
task series over the last week is a wrong label value. A canary without data is
normal at the start of a stage, when none of its tasks has finished: that is a
hold, never an error, or a healthy rollout would abort.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from ..errors import SourceError
from ..sources.prometheus import PrometheusSource
from ..store import Store
from ..store._schema import first_row
from ._errors import UnknownRelease

__all__ = ["LOOKBACK", "UNKNOWN_SECONDS", "KnownReleases", "known_release"]

log = logging.getLogger("canary_stats.service")

#: How far back Prometheus is asked whether a release ever reported.
LOOKBACK = timedelta(days=7)
#: Seconds an unknown release stays unknown before store and source are asked again:
#: a caller polling a misspelt release must not cost a Prometheus query every time.
UNKNOWN_SECONDS = 60.0


def known_release(store: Store, version: str) -> bool:
    """Whether the store has heard of ``version``: registered, or any data stored."""
    row = first_row(
        store.con.execute(
            "SELECT EXISTS (SELECT 1 FROM releases WHERE version = $v)"
            " OR EXISTS (SELECT 1 FROM series WHERE release = $v)"
            " OR EXISTS (SELECT 1 FROM events WHERE release = $v)"
            " OR EXISTS (SELECT 1 FROM eval_scores WHERE release = $v)",
            {"v": version},
        )
    )
    return bool(row and row[0])


class KnownReleases:
    """Releases found in the store or the source; once found, a release stays known."""

    def __init__(
        self, source: PrometheusSource | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._found: set[str] = set()
        self._unknown: dict[str, tuple[float, str]] = {}  # until when, and why

    def require(self, stable: str, store: Callable[[], AbstractContextManager[Store]]) -> None:
        """Raise `UnknownRelease` unless ``stable`` is known; ``store`` locks the store.

        An unknown release is answered from memory for `UNKNOWN_SECONDS`, then asked
        about again (it may have been registered or deployed meanwhile).
        """
        with self._lock:
            if stable in self._found:
                return
            remembered = self._unknown.get(stable)
            if remembered is not None and self._clock() < remembered[0]:
                raise UnknownRelease("stable", remembered[1])
        with store() as opened:
            known = known_release(opened, stable)
        where = "not registered and no data stored"
        if not known and self._source is not None:
            where += f", and no task series in Prometheus over the last {LOOKBACK.days} days"
            try:
                known = self._source.has_series(stable, lookback=LOOKBACK, now=datetime.now(UTC))
            except SourceError as exc:  # cannot tell: judge; the pull's failure makes it hold
                log.warning("cannot ask the source about %s: %s", stable, exc)
                known = True
        if not known:
            why = f"release {stable!r} is unknown ({where}); check the label value"
            with self._lock:
                if len(self._unknown) > 1000:
                    self._unknown.clear()  # bounded: callers may send any label value
                self._unknown[stable] = (self._clock() + UNKNOWN_SECONDS, why)
            raise UnknownRelease("stable", why)
        with self._lock:
            self._found.add(stable)
            self._unknown.pop(stable, None)
