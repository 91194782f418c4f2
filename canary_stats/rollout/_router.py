"""Sticky traffic split between a stable and a canary release.

A user (or session) id is hashed with a salt into one of `Router.BUCKETS` buckets;
the user is on the canary iff its bucket is below the canary's bucket count. So a
user keeps their release while the share stays put, and raising the share only
moves users from stable to canary, never back.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from ..errors import InputError

__all__ = ["Route", "Router"]

Cohort = Literal["stable", "canary"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one task was routed.

    Attributes
    ----------
    cohort : {"stable", "canary"}
        The cohort the task belongs to.
    version : str
        The release serving the task (tag the task's events with it).
    bucket : int
        The key's bucket in ``[0, Router.BUCKETS)``.
    """

    cohort: Cohort
    version: str
    bucket: int


def _release(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, f"expected a non-empty release version; got {value!r}")
    return value


def _salted(salt: str) -> Any:
    """A blake2b state that has absorbed the salt, to copy for each key.

    The salt's length goes first so that no (salt, key) pair collides with another
    that merely moves characters across the boundary.
    """
    raw = salt.encode()
    h = hashlib.blake2b(digest_size=8)
    h.update(len(raw).to_bytes(8, "big") + raw)
    return h


def _buckets_for(percent: object) -> int:
    """Whole buckets for a share in percent (0.01 % each), rounded half up."""
    if isinstance(percent, bool) or not isinstance(percent, Real):
        raise InputError("weight", f"expected a number of percent; got {percent!r}")
    p = float(percent)
    if not (math.isfinite(p) and 0.0 <= p <= 100.0):
        raise InputError("weight", f"expected a canary share in [0, 100] percent; got {p!r}")
    # The epsilon absorbs binary error: 0.29 * 100 is 28.999999999999996.
    return min(Router.BUCKETS, math.floor(p * Router.BUCKETS / 100.0 + 0.5 + 1e-9))


class Router:
    """Sticky split of tasks between a stable and a canary release.

    Parameters
    ----------
    stable, canary : str
        The two releases' versions; every `Route` carries the one it chose. They may
        be equal (a release pair without a canary).
    weight : float, default: 0
        The canary's share in percent, see `set_weight`.
    salt : str, optional
        Salt of the hash; defaults to ``canary``, so each release samples its own
        canary users while the assignments stay fixed within a release.

    Notes
    -----
    A key's bucket is ``blake2b(salt, key) mod 10_000`` (never Python's ``hash()``,
    which is randomised per process), so every process and every restart agrees.
    Weights have a resolution of 0.01 % (one bucket) and are rounded half up to whole
    buckets: 0.05 % is 5 buckets, 0.004 % is none. A key is on the canary iff its
    bucket is below the canary's bucket count, so raising the weight only moves
    users from stable to canary.

    All methods are thread-safe; one lock guards the state.
    """

    BUCKETS: ClassVar[int] = 10_000

    def __init__(
        self, *, stable: str, canary: str, weight: float = 0.0, salt: str | None = None
    ) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._in_flight: dict[str, int] = {"stable": 0, "canary": 0}
        self._install(stable, canary, salt)
        self._canary_buckets = _buckets_for(weight)

    def _install(self, stable: str, canary: str, salt: str | None) -> None:
        """Set the release pair (callers hold the lock, or own the object alone)."""
        pair = _release(stable, "stable"), _release(canary, "canary")
        if salt is not None and not isinstance(salt, str):
            raise InputError("salt", f"expected a string; got {salt!r}")
        self._stable, self._canary = pair  # only once all is valid
        self._salt = canary if salt is None else salt
        self._prefix = _salted(self._salt)
        self._canary_buckets = 0
        self._accepting = True

    # -- state ----------------------------------------------------------------------

    @property
    def stable(self) -> str:
        """The stable release's version."""
        return self._stable

    @property
    def canary(self) -> str:
        """The canary release's version."""
        return self._canary

    @property
    def salt(self) -> str:
        """The salt of the bucket hash."""
        return self._salt

    @property
    def weight(self) -> float:
        """The canary's share in percent, as routed (whole buckets, 0.01 % each)."""
        return self._canary_buckets * 100.0 / self.BUCKETS

    @property
    def canary_buckets(self) -> int:
        """Number of buckets on the canary: keys with ``bucket < canary_buckets``."""
        return self._canary_buckets

    @property
    def accepting_canary(self) -> bool:
        """False after `stop_canary` until `reset`."""
        return self._accepting

    def set_weight(self, percent: float) -> None:
        """Route ``percent`` % of the keys (rounded to whole buckets) to the canary.

        Idempotent. After `stop_canary` only 0 is accepted until `reset`.

        Raises
        ------
        InputError
            ``weight`` outside [0, 100], not a number, or above 0 on a stopped canary.
        """
        buckets = _buckets_for(percent)
        with self._cond:
            if buckets and not self._accepting:
                raise InputError(
                    "weight",
                    f"the canary {self._canary} was stopped; reset() with a new release "
                    "pair before routing to a canary again",
                )
            self._canary_buckets = buckets

    def stop_canary(self) -> None:
        """Weight 0, and refuse canary work (`route` answers stable) until `reset`.

        Tasks already in flight on the canary finish; `drain` waits for them.
        """
        with self._cond:
            self._canary_buckets = 0
            self._accepting = False

    def reset(self, *, stable: str, canary: str, salt: str | None = None) -> None:
        """Switch to a new release pair: weight 0, canary accepted again, new salt.

        Tasks in flight keep counting in their cohort until they finish.
        """
        with self._cond:
            self._install(stable, canary, salt)

    # -- routing --------------------------------------------------------------------

    def bucket(self, key: str) -> int:
        """The bucket of ``key`` under the current salt, in ``[0, BUCKETS)``."""
        with self._cond:
            prefix = self._prefix
        return self._hash(prefix, _key(key, "key"))

    def _hash(self, prefix: Any, key: str) -> int:
        h = prefix.copy()
        h.update(key.encode())
        return int.from_bytes(h.digest(), "big") % self.BUCKETS

    def _decide(self, bucket: int) -> Route:
        """The route of a bucket under the current state (callers hold the lock)."""
        if self._accepting and bucket < self._canary_buckets:
            return Route("canary", self._canary, bucket)
        return Route("stable", self._stable, bucket)

    def route(self, key: str) -> Route:
        """The route of the task of ``key``; always stable after `stop_canary`."""
        key = _key(key, "key")
        with self._cond:
            return self._decide(self._hash(self._prefix, key))

    def route_many(
        self, keys: Sequence[str] | npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Vectorised `route` for simulations: ``(is_canary, buckets)`` arrays.

        All keys are routed under one snapshot of the state and get exactly
        `route`'s answer. Integer ids are hashed as their decimal text, so ``7``
        and ``"7"`` share a bucket.
        """
        with self._cond:
            prefix, threshold = self._prefix, self._canary_buckets if self._accepting else 0
        buckets = np.fromiter(
            (self._hash(prefix, _key(k, f"keys[{i}]")) for i, k in enumerate(keys)),
            dtype=np.int64,
            count=len(keys),
        )
        return buckets < threshold, buckets

    # -- in-flight work -------------------------------------------------------------

    @contextmanager
    def task(self, key: str) -> Iterator[Route]:
        """Route a task and count it in flight until the block exits.

        Routing and counting happen under the lock, so a task routed to the canary
        before `stop_canary` is always seen by `drain`.
        """
        key = _key(key, "key")
        with self._cond:
            route = self._decide(self._hash(self._prefix, key))
            self._in_flight[route.cohort] += 1
        try:
            yield route
        finally:
            with self._cond:
                self._in_flight[route.cohort] -= 1
                self._cond.notify_all()

    def in_flight(self) -> dict[str, int]:
        """Tasks in flight per cohort: ``{"stable": n, "canary": m}``."""
        with self._cond:
            return dict(self._in_flight)

    def drain(self, timeout: float, *, poll: float = 0.01) -> bool:
        """Wait until no canary task is in flight; True if that happened in time.

        Wakes as soon as the last canary task finishes, and at least every ``poll``
        seconds. Does not stop new canary work by itself: call `stop_canary` first.
        """
        if not (math.isfinite(timeout) and timeout >= 0):
            raise InputError("timeout", f"expected seconds >= 0; got {timeout!r}")
        if not (math.isfinite(poll) and poll > 0):
            raise InputError("poll", f"expected seconds > 0; got {poll!r}")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight["canary"]:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(poll, left))
            return True

    def __repr__(self) -> str:
        return (
            f"Router(stable={self._stable!r}, canary={self._canary!r}, "
            f"weight={self.weight:g}, accepting_canary={self._accepting})"
        )


def _key(key: object, field: str) -> str:
    """A routing key as text: strings as they are, integer ids as decimal text."""
    if isinstance(key, str):
        if not key:
            raise InputError(field, "expected a non-empty user or session id")
        return key
    if isinstance(key, Integral) and not isinstance(key, bool | np.bool_):
        return str(int(key))
    raise InputError(field, f"expected a user or session id (str or int); got {key!r}")
