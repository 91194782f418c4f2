"""Rollout backends: how the executor moves traffic on the platform that serves it.

`LocalBackend` drives an in-process `Router` (demo, simulations); `CommandBackend`
(in `_commands`) runs configured commands (kubectl, a mesh CLI); `FileBackend`
writes the desired state as JSON for an external router. Every method is
idempotent: after a crash the executor repeats its last action.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import BackendError, InputError
from ._commands import CommandBackend, CommandSettings, _seconds, _version
from ._router import Router, _buckets_for

# BackendError, CommandBackend and CommandSettings stay importable from here.
__all__ = [
    "Backend",
    "BackendError",
    "CommandBackend",
    "CommandSettings",
    "FileBackend",
    "LocalBackend",
    "backend_from_settings",
]


@runtime_checkable
class Backend(Protocol):
    """What the executor calls to move traffic. Every method is idempotent.

    - ``set_weight``: route ``percent`` % (0.01 % resolution) to ``canary``, the rest
      to ``stable``. After a stop, the local and file backends refuse a weight above 0
      for the same pair (`InputError`); a new pair re-opens canary work.
    - ``stop_canary``: weight 0, no new canary work, then wait at most
      ``drain_timeout`` s for canary work in flight; True if it drained.
    - ``invalidate_caches``: drop what caches may hold from the canary.
    - ``apply_manifest``: (re-)deploy the manifest of ``version`` (the rollback path);
      does not change the traffic split.
    """

    name: str

    def set_weight(self, percent: float, *, stable: str, canary: str) -> None: ...
    def stop_canary(self, *, drain_timeout: float) -> bool: ...
    def invalidate_caches(self) -> None: ...
    def apply_manifest(self, manifest_text: str, *, version: str) -> None: ...


# -- local ------------------------------------------------------------------------------


class LocalBackend:
    """A `Router` in this process: the demo's and the simulation's backend.

    ``set_weight`` with a pair other than the router's calls `Router.reset` first.
    ``apply_manifest`` only records the manifest (``manifest_version``,
    ``manifest_text``): nothing is deployed in-process. ``invalidate`` is called by
    ``invalidate_caches`` when given (e.g. to clear an in-process cache).
    """

    name = "local"

    def __init__(self, router: Router, *, invalidate: Callable[[], None] | None = None) -> None:
        self.router = router
        self._invalidate = invalidate
        self.manifest_version: str | None = None
        self.manifest_text: str | None = None

    def set_weight(self, percent: float, *, stable: str, canary: str) -> None:
        if (stable, canary) != (self.router.stable, self.router.canary):
            _buckets_for(percent)  # a bad weight must not reset the pair
            self.router.reset(stable=stable, canary=canary)
        self.router.set_weight(percent)

    def stop_canary(self, *, drain_timeout: float) -> bool:
        timeout = _seconds(drain_timeout, "drain_timeout")
        self.router.stop_canary()
        return self.router.drain(timeout)

    def invalidate_caches(self) -> None:
        if self._invalidate is not None:
            self._invalidate()

    def apply_manifest(self, manifest_text: str, *, version: str) -> None:
        self.manifest_text, self.manifest_version = manifest_text, _version(version)


# -- file -------------------------------------------------------------------------------


class FileBackend:
    """Writes the desired state as JSON for an external router to follow.

    The file holds ``stable``, ``canary``, ``weight`` (canary %, 0.01 % steps),
    ``accepting_canary``, ``manifest_version``, ``updated_at`` (ISO 8601, UTC) and,
    once caches were invalidated, ``caches_invalidated_at``. Each action reads the
    file, changes its own fields, keeps every other field (a reader may add its own)
    and writes only when something changed. A write goes to a temporary file in the
    same directory, is fsynced and then renamed over the file, so a reader never
    sees a half-written state. ``apply_manifest`` writes the manifest text to
    ``<stem>.manifest.yaml`` beside the file before it names its version.

    This process cannot see the external router's work in flight: ``stop_canary``
    returns True once the stop is written, and draining is the router's job. One
    process should own the file (the executor); threads in it are serialised.
    """

    name = "file"

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    @property
    def manifest_path(self) -> Path:
        """Where `apply_manifest` writes the manifest text."""
        return self.path.with_name(f"{self.path.stem}.manifest.yaml")

    def state(self) -> dict[str, Any]:
        """The current state: the file's content, defaults when it does not exist."""
        state: dict[str, Any] = {
            "stable": None, "canary": None, "weight": 0.0, "accepting_canary": True,
            "manifest_version": None, "updated_at": None,
        }  # fmt: skip
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise BackendError(self.name, f"cannot read {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BackendError(self.name, f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BackendError(self.name, f"{self.path} does not hold a JSON object")
        return {**state, **doc}

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        with self._lock:
            old = self.state()
            new = {**old, **change(old)}
            if new != old or not self.path.exists():
                new["updated_at"] = self._clock().isoformat(timespec="milliseconds")
                _write_atomic(self.path, json.dumps(new, indent=2) + "\n", self.name)

    def set_weight(self, percent: float, *, stable: str, canary: str) -> None:
        weight = _buckets_for(percent) / 100
        stable, canary = _version(stable, "stable"), _version(canary, "canary")

        def change(old: dict[str, Any]) -> dict[str, Any]:
            same = (old["stable"], old["canary"]) == (stable, canary)
            if same and weight and not old["accepting_canary"]:
                raise InputError(
                    "weight",
                    f"the canary {canary} was stopped; set a new release pair before "
                    "routing to a canary again",
                )
            accepting = old["accepting_canary"] if same else True
            return {"stable": stable, "canary": canary, "weight": weight,
                    "accepting_canary": accepting}  # fmt: skip

        self._update(change)

    def stop_canary(self, *, drain_timeout: float) -> bool:
        _seconds(drain_timeout, "drain_timeout")
        self._update(lambda old: {"weight": 0.0, "accepting_canary": False})
        return True

    def invalidate_caches(self) -> None:
        stamp = self._clock().isoformat(timespec="milliseconds")
        self._update(lambda old: {"caches_invalidated_at": stamp})

    def apply_manifest(self, manifest_text: str, *, version: str) -> None:
        version = _version(version)
        with self._lock:  # the text lands before the JSON names its version
            _write_atomic(self.manifest_path, manifest_text, self.name)
        self._update(lambda old: {"manifest_version": version})


def _write_atomic(path: Path, text: str, backend: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, whole."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackendError(backend, f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename itself survives a power cut only once the directory is synced.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BackendError(backend, f"cannot write {path}: {exc.strerror}") from None


# -- factory ----------------------------------------------------------------------------


def backend_from_settings(
    kind: Literal["local", "command", "file"],
    *,
    router: Router | None = None,
    commands: CommandSettings | str | Path | None = None,
    path: str | Path | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Backend:
    """The backend the CLI's ``--backend KIND`` names, from its other options.

    ``local`` drives ``router`` (default: a new one whose release pair the first
    ``set_weight`` sets); ``command`` needs ``commands`` (settings or a YAML file)
    and takes ``timeout`` and ``env``; ``file`` needs ``path``.

    Raises
    ------
    InputError
        An unknown ``backend`` kind, or a missing option (named as the field).
    """
    if kind == "local":
        return LocalBackend(router or Router(stable="stable", canary="canary"))
    if kind == "command":
        if commands is None:
            raise InputError("commands", "the command backend needs a commands file")
        if not isinstance(commands, CommandSettings):
            commands = CommandSettings.from_file(commands)
        return CommandBackend(commands, timeout=timeout, env=env)
    if kind == "file":
        if path is None:
            raise InputError("path", "the file backend needs the path of its state file")
        return FileBackend(path)
    raise InputError("backend", f"expected one of local, command, file; got {kind!r}")
