"""The exception hierarchy: every class survives pickle with its message and attributes."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import canary_stats.errors as errors
import canary_stats.rollout  # noqa: F401  (its ReleaseLocked is a subclass too)
from canary_stats.errors import CanaryStatsError

#: A value for each constructor parameter the hierarchy uses; any other name gets text.
VALUES: dict[str, Any] = {
    "field": "spec.model.primary",
    "message": "expected an exact pin; got 'latest'",
    "line": 23,
    "source": "http://prometheus:9090",
    "backend": "command",
    "command": "kubectl apply -f {manifest}",
    "returncode": 1,
    "stderr": "error: the server refused",
}


def _classes() -> list[type[CanaryStatsError]]:
    exported = [getattr(errors, name) for name in errors.__all__]
    found: list[type[CanaryStatsError]] = []
    todo = [c for c in exported if isinstance(c, type) and issubclass(c, CanaryStatsError)]
    while todo:  # every subclass imported so far, not only the exported ones
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo += cls.__subclasses__()
    assert set(exported) <= set(found)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _instance(cls: type[CanaryStatsError]) -> CanaryStatsError:
    if cls.__init__ is Exception.__init__:  # no constructor of its own
        return cls(VALUES["message"])
    params = inspect.signature(cls).parameters.values()
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = VALUES.get(p.name, f"<{p.name}>")
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return cls(*args, **kwargs)


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__qualname__)
def test_every_error_survives_pickle(cls: type[CanaryStatsError]) -> None:
    error = _instance(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (str(copy), copy.args, vars(copy)) == (str(error), error.args, vars(error))


def test_attributes_survive_pickle() -> None:
    manifest = pickle.loads(pickle.dumps(errors.ManifestError("spec.x", "bad", line=4)))
    assert (manifest.field, manifest.line, str(manifest)) == ("spec.x", 4, "spec.x: bad (line 4)")
    backend = errors.BackendError("command", "failed", command="c", returncode=2, stderr="e")
    copy = pickle.loads(pickle.dumps(backend))
    assert (copy.backend, copy.command, copy.returncode, copy.stderr, str(copy)) == (
        "command",
        "c",
        2,
        "e",
        "command: failed",
    )
    source = pickle.loads(pickle.dumps(errors.SourceUnavailable("http://p", "down")))
    assert (source.source, str(source)) == ("http://p", "http://p: down")
