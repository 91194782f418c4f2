"""The judge behind the endpoints: one store, a verdict cache, a background refresher.

One process owns the DuckDB file, and every use of it goes through one lock
(DuckDB connections are not thread-safe). Pulls from Prometheus run outside the
lock, so a slow source never blocks judging from the store.

A request answers from the cache when its verdict is fresh. Otherwise it starts
(or joins) the computation and waits at most ``deadline`` seconds; past that it
answers a hold saying the verdict is still being computed, and the computation
goes on to fill the cache. Every release asked about within ``active_minutes`` is
recomputed every ``refresh_interval`` seconds. Each verdict is also kept encoded, for
request bodies seen before (`remember`, `cached_body`, used by ``_fastpath``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from .._stages import earlier_views, history_before, rollout_start
from .._verdict import Verdict
from ..errors import InputError, SourceError, StoreError
from ..judge import analyze
from ..policy import Policy
from ..sources.prometheus import PrometheusSource
from ..store import Store
from ._errors import UnknownRelease
from ._known import KnownReleases
from ._metrics import ServiceMetrics
from ._models import Decision, Release
from ._settings import Settings
from ._storage import latest_stage, newest_data, seen_starts, stage_start

__all__ = ["Analyze", "JudgeService", "Served"]

log = logging.getLogger("canary_stats.service")

#: ``analyze``'s signature; tests inject a slow one.
Analyze = Callable[..., Verdict]

# Windows re-pulled before the last pull's end: late samples and partial windows heal.
_REPULL_WINDOWS = 5
#: Request bodies remembered for the fast path; past this the memo starts afresh.
_MAX_BODIES = 4096
#: Windows ending this recently may still miss their last scrape; a stored window is not
#: rewritten, so pull them only once they have settled.
_SETTLE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class _Key:
    stable: str
    canary: str
    stage: int
    manifest: str
    #: When the caller says the stage began; None: when the service first saw it.
    started_at: datetime | None
    #: When the caller says the earlier stages began; None: when the service saw them.
    stage_starts: tuple[datetime | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class Served:
    """A verdict as answered, and where it came from."""

    verdict: dict[str, Any]
    cache: Literal["hit", "computed", "pending"]
    computed_at: datetime | None
    stage_started_at: datetime | None

    @property
    def decision(self) -> Decision:
        return cast(Decision, self.verdict["decision"])

    def headers(self) -> dict[str, str]:
        """Headers saying where the verdict came from; the body stays the verdict alone."""

        def stamp(value: datetime | None) -> str:
            return value.isoformat().replace("+00:00", "Z") if value else ""

        return {
            "x-canary-stats-cache": self.cache,
            "x-canary-stats-computed-at": stamp(self.computed_at),
            "x-canary-stats-stage-started-at": stamp(self.stage_started_at),
        }


@dataclass(slots=True)
class _Entry:
    """What the service knows of one release at one stage (guarded by the entries lock)."""

    last_asked: float
    start: datetime | None = None
    verdict: dict[str, Any] | None = None
    #: The verdict as the response body (what JSONResponse would send), encoded once.
    encoded: bytes = b""
    computed_at: datetime | None = None
    computed_mono: float = field(default=-float("inf"))


class JudgeService:
    def __init__(self, settings: Settings, *, analyze_fn: Analyze = analyze) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self._analyze = analyze_fn
        self._source = PrometheusSource(settings.prometheus) if settings.prometheus else None
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._lock = threading.Lock()  # entries, in-flight computations, policies
        self._entries: dict[_Key, _Entry] = {}
        self._inflight: dict[_Key, Future[Served]] = {}
        self._policies: dict[str, tuple[int, Policy]] = {}
        # Validated Argo request bodies and the verdict each asks for (see `cached_body`).
        self._bodies: dict[bytes, _Key] = {}
        self._known = KnownReleases(self._source)
        # Per pair, the span already pulled from the source.
        self._pulled: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="canary-stats-judge")
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._store = Store(self.settings.db)
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="canary-stats-refresher", daemon=True
        )
        self._refresher.start()
        log.info("judging from %s (source: %s)", self.settings.db, self._source_name())

    def stop(self) -> None:
        self._stop.set()
        # Running computations finish on their own; they find the store closed.
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def ready(self) -> tuple[bool, bool]:
        """(store open, refresher alive)."""
        alive = self._refresher is not None and self._refresher.is_alive()
        return self._store is not None, alive and not self._stop.is_set()

    # -- answering -----------------------------------------------------------------

    def check(self, release: Release) -> Path:
        """The manifest judging ``release``; an `InputError` if it cannot be judged."""
        path = self._manifest_path(release.manifest)
        self._policy(path).check_stage(release.stage)
        return path

    def cached(self, release: Release) -> Served | None:
        """The verdict if a fresh one is cached, without blocking on a computation.

        The event loop answers these itself; only a miss goes to a worker thread.
        """
        hit = self._fresh(self._key(release))
        return hit[1] if hit else None

    def remember(self, body: bytes, release: Release) -> None:
        """Note that ``body`` is a valid request for ``release`` (see `cached_body`)."""
        key = self._key(release)
        with self._lock:
            if len(self._bodies) >= _MAX_BODIES:
                self._bodies.clear()
            self._bodies[body] = key

    def cached_body(self, body: bytes) -> tuple[bytes, Served] | None:
        """The encoded fresh verdict for a request body validated before, else None.

        A poller sends the same bytes every time, so a repeat needs neither parsing nor
        validation: the body was checked the first time it came, and the manifest and
        stage it names are checked again by every background refresh.
        """
        with self._lock:
            key = self._bodies.get(body)
        return None if key is None else self._fresh(key)

    def _fresh(self, key: _Key) -> tuple[bytes, Served] | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.verdict is None:
                return None
            if now - entry.computed_mono >= self.settings.stale_seconds:
                return None
            entry.last_asked = now
            return entry.encoded, Served(entry.verdict, "hit", entry.computed_at, entry.start)

    def _key(self, release: Release) -> _Key:
        path = self.check(release)
        return _Key(
            release.stable, release.canary, release.stage, str(path), release.stage_started_at,
            release.stage_starts,
        )  # fmt: skip

    def verdict(self, release: Release) -> Served:
        """The latest verdict, computed on demand within the deadline when stale."""
        began = time.monotonic()
        stale_after = self.settings.stale_seconds
        key = self._key(release)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry(last_asked=began))
            entry.last_asked = began
            if entry.verdict is not None and began - entry.computed_mono < stale_after:
                return Served(entry.verdict, "hit", entry.computed_at, entry.start)
        future = self._submit(key)
        left = self.settings.deadline - (time.monotonic() - began)
        try:
            return future.result(timeout=max(0.0, left))
        except TimeoutError:
            self.metrics.deadline_holds.inc()
            return self._pending(key, entry)

    def flagger_stage(self, stable: str, canary: str) -> int:
        """The stage a Flagger canary is at: 0, plus one per traffic increase granted."""
        with self._locked_store() as store:
            return latest_stage(store, stable=stable, canary=canary) or 0

    def advance(self, stable: str, canary: str, stage: int) -> None:
        """Record that the pair moved on to ``stage`` now (its minimum duration starts)."""
        with self._locked_store() as store:
            stage_start(store, stable=stable, canary=canary, stage=stage, now=datetime.now(UTC))

    def forget(self, stable: str, canary: str) -> None:
        """Stop refreshing a pair (its rollout ended)."""
        with self._lock:
            for key in [k for k in self._entries if (k.stable, k.canary) == (stable, canary)]:
                del self._entries[key]
                self.metrics.forget(key.stable, key.canary, key.stage)
            self._pulled.pop((stable, canary), None)
            self._bodies = {b: k for b, k in self._bodies.items() if k in self._entries}
            self.metrics.active.set(len(self._entries))

    def _manifest_path(self, name: str | None) -> Path:
        if name is None:
            if self.settings.manifest is None:
                raise InputError("manifest", "name a manifest: the service has no default manifest")
            return self.settings.manifest.resolve()
        root = self.settings.manifest_root
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise InputError("manifest", f"{name!r} is outside the manifest directory {root}")
        return path

    def _policy(self, path: Path) -> Policy:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            raise InputError("manifest", f"{path}: no such manifest") from None
        with self._lock:
            cached = self._policies.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        policy = Policy.from_manifest(path)
        with self._lock:
            self._policies[str(path)] = (stamp, policy)
        return policy

    def require_known(self, stable: str) -> None:
        """Raise `UnknownRelease` unless the stable release was ever seen (`KnownReleases`)."""
        self._known.require(stable, self._locked_store)

    def _pending(self, key: _Key, entry: _Entry) -> Served:
        policy = self._policy(Path(key.manifest))
        stage = policy.stages[key.stage]
        start = key.started_at or entry.start
        elapsed = (datetime.now(UTC) - start).total_seconds() / 60 if start else None
        previous = ""
        if entry.verdict is not None and entry.computed_at is not None:
            age = (datetime.now(UTC) - entry.computed_at).total_seconds()
            previous = f" (the previous verdict, {age:.0f} s old, was {entry.verdict['decision']})"
        reason = (
            f"hold: the verdict for {key.canary} against {key.stable} at stage {key.stage} is "
            f"still being computed{previous}; ask again shortly."
        )
        verdict = {
            "decision": "hold",
            "reason": reason,
            "stage": key.stage,
            "mode": policy.stage_mode(key.stage),
            "traffic": stage.traffic,
            "elapsed_minutes": None if elapsed is None else round(max(elapsed, 0.0), 3),
            "eta_minutes": None,
            "n_stable": 0,
            "n_canary": 0,
            "metrics": {},
            "sample_ratio": None,
            "data_issues": [],
            "alpha": None,
        }
        return Served(verdict, "pending", None, start)

    # -- computing -----------------------------------------------------------------

    def _submit(self, key: _Key) -> Future[Served]:
        with self._lock:
            future = self._inflight.get(key)
            if future is not None and not future.done():
                return future
            try:
                future = self._pool.submit(self._compute, key)
            except RuntimeError:  # the pool is shut down
                raise StoreError("the service is shutting down") from None
            self._inflight[key] = future

        def done(f: Future[Served]) -> None:
            with self._lock:
                if self._inflight.get(key) is f:
                    del self._inflight[key]

        future.add_done_callback(done)
        return future

    @contextmanager
    def _locked_store(self) -> Iterator[Store]:
        with self._store_lock:
            if self._store is None:
                raise StoreError(f"{self.settings.db}: the store is closed")
            yield self._store

    def _compute(self, key: _Key) -> Served:
        began = time.perf_counter()
        policy = self._policy(Path(key.manifest))
        with self._lock:  # a release forgotten meanwhile is still answered, not cached
            entry = self._entries.get(key) or _Entry(last_asked=time.monotonic())
        try:
            self.require_known(key.stable)
        except UnknownRelease:
            with self._lock:  # a 404 is not refreshed in the background
                self._entries.pop(key, None)
            raise
        now = datetime.now(UTC)
        start = key.started_at or entry.start
        if start is None or entry.start is None:
            # Recorded even when the caller names the start: later stages need it as
            # the end of this one's evidence.
            with self._locked_store() as store:
                seen = stage_start(
                    store,
                    stable=key.stable,
                    canary=key.canary,
                    stage=key.stage,
                    now=start or now,
                    traffic=policy.stages[key.stage].traffic,
                    manifest=key.manifest,
                )
            start = start or seen
        if self._source is not None:
            self._pull(key.stable, key.canary, start, now)
        with self._locked_store() as store:
            view = store.select(stable=key.stable, canary=key.canary, start=start)
            starts: Sequence[datetime | None] | None = key.stage_starts
            if starts is None:
                starts = seen_starts(store, stable=key.stable, canary=key.canary, stage=key.stage)
            earlier = earlier_views(
                store, stable=key.stable, canary=key.canary, starts=starts, current=start
            )
            history = history_before(view, rollout_start(earlier, start), policy.user_history)
            verdict = self._analyze(
                view, policy, stage=key.stage, elapsed=max(now - start, timedelta(0)),
                earlier=earlier, history=history,
            )  # fmt: skip
            newest = newest_data(store, key.canary)
        result = verdict.to_dict()
        lag = (now - newest).total_seconds() if newest is not None else None
        self.metrics.compute_seconds.observe(time.perf_counter() - began)
        self.metrics.observe(key.stable, key.canary, key.stage, verdict.decision, lag)
        encoded = _encode(result)
        with self._lock:
            entry.start, entry.verdict, entry.encoded = start, result, encoded
            entry.computed_at, entry.computed_mono = now, time.monotonic()
        return Served(result, "computed", now, start)

    def _pull(self, stable: str, canary: str, start: datetime, now: datetime) -> None:
        """Pull the newest windows into the store; a failure is logged there (the judge holds)."""
        assert self._source is not None
        window = self.settings.window
        with self._lock:
            pulled = self._pulled.get((stable, canary))
        since = start
        if pulled is not None and pulled[0] <= start:
            since = max(start, pulled[1] - _REPULL_WINDOWS * window)
        name = self._source_name()
        try:
            pull = self._source.pull(
                stable=stable, canary=canary, start=since, end=now - _SETTLE, window=window
            )
        except SourceError as exc:
            self.metrics.source_errors.inc()
            log.warning("pull of %s against %s failed: %s", canary, stable, exc)
            with self._locked_store() as store:
                store.record_failed_ingest(name, str(exc), stable=stable, canary=canary)
            return
        with self._locked_store() as store:
            store.ingest_pull(pull, stable=stable, canary=canary, source=name)
        with self._lock:
            first = min(since, pulled[0]) if pulled is not None else since
            self._pulled[(stable, canary)] = (first, now)

    def _source_name(self) -> str:
        return f"prometheus {self.settings.prometheus.url}" if self.settings.prometheus else "store"

    # -- background ----------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_interval):
            try:
                self.refresh()
            except Exception:  # the loop must outlive any one bad cycle
                if not self._stop.is_set():
                    log.exception("background refresh failed")

    def refresh(self) -> None:
        """Recompute every active release once; forget those not asked about lately."""
        horizon = time.monotonic() - 60 * self.settings.active_minutes
        with self._lock:
            stale = [k for k, e in self._entries.items() if e.last_asked < horizon]
            for key in stale:
                del self._entries[key]
                self.metrics.forget(key.stable, key.canary, key.stage)
            keys = list(self._entries)
            pairs = {(k.stable, k.canary) for k in keys}
            self._pulled = {p: span for p, span in self._pulled.items() if p in pairs}
            self._bodies = {b: k for b, k in self._bodies.items() if k in self._entries}
            self.metrics.active.set(len(keys))
        futures = {self._submit(key): key for key in keys}
        wait(futures)
        for future, key in futures.items():
            error = None if future.cancelled() else future.exception()
            if error is not None:
                log.warning("refresh of %s failed: %s", key, error)


def _encode(verdict: dict[str, Any]) -> bytes:
    """The verdict as `JSONResponse` renders it (compact UTF-8, no NaN)."""
    text = json.dumps(verdict, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode()
