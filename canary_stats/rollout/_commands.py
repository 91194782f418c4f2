"""The command backend: runs a configured command (kubectl, a mesh CLI) per action.

`CommandSettings` holds one command template per action; `CommandBackend` fills in
the values and runs it without a shell. This module also holds the argument checks
`_backends` shares: it imports this module, never the reverse, so no cycle.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import BackendError, InputError
from ._router import _buckets_for

__all__ = ["CommandBackend", "CommandSettings"]


# -- checks shared with _backends -------------------------------------------------------


def _seconds(value: float, field: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= 0):
        raise InputError(field, f"expected seconds >= 0; got {value!r}")
    return float(value)


def _version(value: object, field: str = "version") -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InputError(field, f"expected a non-empty release version; got {value!r}")
    return value


def _weight_text(percent: float) -> str:
    """``percent`` as whole buckets in plain decimals: 10 -> "10", 0.05 -> "0.05"."""
    return f"{_buckets_for(percent) / 100:.2f}".rstrip("0").rstrip(".")


# -- settings and rendering -------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})
_SHELL_C = re.compile(r"-[a-zA-Z]*c")  # -c, -ec, -xc: the next argument is a script


class CommandSettings(BaseModel):
    """Commands of a `CommandBackend`: one template per action, loaded from YAML.

    Placeholders are lower-case names in braces; other braces (JSON) stay as written.

    - ``set_weight`` (required): ``{weight}`` (canary %, e.g. ``0.05``),
      ``{stable_weight}`` (100 - weight), ``{stable}``, ``{canary}``.
    - ``stop_canary``: ``{drain_timeout}`` (s). Absent: ``set_weight`` at 0, which
      then must not use ``{stable}`` or ``{canary}``.
    - ``drain``: ``{drain_timeout}``; exits 0 once canary work has drained and is
      killed at the timeout. Absent: draining is the platform's, and ``stop_canary``
      returns True.
    - ``invalidate_caches``: no placeholders. ``apply_manifest``: ``{manifest}`` (a
      temporary file holding the manifest text), ``{version}``. Absent: no-ops.

    Only ``set_weight`` sees versions: the others are repeated after a crash by a
    process that never saw the pair. Constants go in the template or ``env``.

    Examples
    --------
    An *example* for an Istio mesh (resource and subset names are illustrative)::

        set_weight: >-
          kubectl -n agents patch virtualservice research-agent --type merge -p
          '{"spec":{"http":[{"route":[
          {"destination":{"host":"research-agent","subset":"stable"},"weight":{stable_weight}},
          {"destination":{"host":"research-agent","subset":"canary"},"weight":{weight}}]}]}}'
        stop_canary: ...the same patch with the weights 100 and 0...
        apply_manifest: kubectl apply -f {manifest}

    Istio weights are whole percent. Where Argo Rollouts owns the weights, let it
    (``stop_canary: kubectl argo rollouts abort research-agent -n agents``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    set_weight: str
    stop_canary: str | None = None
    drain: str | None = None
    invalidate_caches: str | None = None
    apply_manifest: str | None = None

    PLACEHOLDERS: ClassVar[dict[str, frozenset[str]]] = {
        "set_weight": frozenset({"weight", "stable_weight", "stable", "canary"}),
        "stop_canary": frozenset({"drain_timeout"}),
        "drain": frozenset({"drain_timeout"}),
        "invalidate_caches": frozenset(),
        "apply_manifest": frozenset({"manifest", "version"}),
    }

    @model_validator(mode="after")
    def _templates(self) -> CommandSettings:
        for key, allowed in self.PLACEHOLDERS.items():
            template = getattr(self, key)
            if template is None:
                continue
            try:
                argv = shlex.split(template)
            except ValueError as exc:
                raise InputError(key, f"cannot split the command: {exc}") from None
            if not argv:
                raise InputError(key, "expected a command; got an empty string")
            unknown = sorted(set(_PLACEHOLDER.findall(template)) - allowed)
            if unknown:
                names = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
                raise InputError(key, f"unknown placeholder {{{unknown[0]}}}; allowed: {names}")
        if self.stop_canary is None and {"stable", "canary"} & set(
            _PLACEHOLDER.findall(self.set_weight)
        ):
            raise InputError(
                "stop_canary",
                "required when set_weight uses {stable} or {canary}: an executor restarted "
                "after a crash must stop the canary without knowing the release pair",
            )
        return self

    @classmethod
    def from_dict(cls, data: Any) -> CommandSettings:
        """Validate a mapping; errors are `InputError`s naming the key."""
        if not isinstance(data, Mapping):
            raise InputError("commands", f"expected a mapping; got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, InputError):
                raise cause from None
            field = ".".join(str(p) for p in err["loc"]) or "commands"
            raise InputError(field, err["msg"]) from None

    @classmethod
    def from_file(cls, path: str | Path) -> CommandSettings:
        """Read YAML (or JSON); a file holding only a ``commands:`` section works too."""
        p = Path(path)
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(str(p), f"cannot read the commands: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InputError(str(p), f"not valid YAML: {exc}") from None
        if isinstance(doc, dict) and set(doc) == {"commands"}:
            doc = doc["commands"]
        return cls.from_dict(doc)


def _render(template: str, values: Mapping[str, str]) -> list[str]:
    """The argv of a template: split first, then each placeholder filled in.

    A value fills its argument verbatim, so no shell ever parses it. In the script
    after ``-c`` of a shell (``sh -c '...'``, also behind ``env`` or ``kubectl exec
    --``) it goes in shell-quoted.
    """
    argv = shlex.split(template)

    def fill(arg: str, quote: bool) -> str:
        return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m[1]]) if quote else values[m[1]], arg)

    def is_script(i: int) -> bool:
        return bool(_SHELL_C.fullmatch(argv[i - 1])) and any(
            Path(a).name in _SHELLS for a in argv[: i - 1])  # fmt: skip

    return [fill(arg, i >= 2 and is_script(i)) for i, arg in enumerate(argv)]


class CommandBackend:
    """Runs the configured command of each action, with values templated in.

    Commands run without a shell (``shlex.split`` then ``argv``); substituted values
    are never parsed by a shell, whatever they hold. Pipes and redirections need an
    explicit shell, ``sh -c 'kubectl ... | tee -a log' ``; a placeholder in that
    script is filled in shell-quoted. ``env`` is added to this process's
    environment. Each command is killed (with its process group) after ``timeout``
    seconds. A failure raises `BackendError` naming the command, its exit code and
    the tail of its stderr. See `CommandSettings` for the placeholders and an
    example.
    """

    name = "command"

    def __init__(self, commands: CommandSettings, *, timeout: float = 60.0,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        if not isinstance(commands, CommandSettings):
            raise InputError("commands", f"expected CommandSettings; got {commands!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise InputError("timeout", f"expected seconds > 0; got {timeout!r}")
        self.commands, self.timeout = commands, float(timeout)
        self.env = {**os.environ, **(env or {})}

    def _run(self, key: str, values: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
        """Run the command of ``key``: its exit code (None if killed at the timeout)."""
        template = getattr(self.commands, key)
        try:
            proc = subprocess.Popen(
                _render(template, values), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self.env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise BackendError(
                self.name, f"{key} command {template!r} did not start: {exc}", command=template
            ) from None
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The whole group: `sh -c` children would otherwise hold the pipes open.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            return None, _tail(err)
        return proc.returncode, _tail(err)

    def _check(self, key: str, values: Mapping[str, str]) -> None:
        code, tail = self._run(key, values, self.timeout)
        if code != 0:
            template = getattr(self.commands, key)
            what = f"timed out after {self.timeout:g} s" if code is None else f"exited with {code}"
            raise BackendError(
                self.name,
                f"{key} command {template!r} {what}" + (f"; stderr: {tail}" if tail else ""),
                command=template, returncode=code, stderr=tail,
            )  # fmt: skip

    def set_weight(self, percent: float, *, stable: str, canary: str) -> None:
        weight = _weight_text(percent)
        values = {
            "weight": weight,
            "stable_weight": _weight_text(100 - float(weight)),
            "stable": _version(stable, "stable"),
            "canary": _version(canary, "canary"),
        }
        self._check("set_weight", values)

    def stop_canary(self, *, drain_timeout: float) -> bool:
        timeout = _seconds(drain_timeout, "drain_timeout")
        values = {"drain_timeout": f"{timeout:g}"}
        if self.commands.stop_canary is not None:
            self._check("stop_canary", values)
        else:  # the settings make sure set_weight needs no versions then
            self._check("set_weight", {"weight": "0", "stable_weight": "100"})
        if self.commands.drain is None:
            return True
        # Non-zero (gave up) or killed at the timeout: not drained, not an error.
        return self._run("drain", values, timeout)[0] == 0

    def invalidate_caches(self) -> None:
        if self.commands.invalidate_caches is not None:
            self._check("invalidate_caches", {})

    def apply_manifest(self, manifest_text: str, *, version: str) -> None:
        if self.commands.apply_manifest is None:
            return
        fd, name = tempfile.mkstemp(prefix="canary-manifest-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(manifest_text)
            self._check("apply_manifest", {"manifest": name, "version": _version(version)})
        finally:
            os.unlink(name)


def _tail(text: bytes | None, limit: int = 2000) -> str:
    s = (text or b"").decode("utf-8", "replace").strip()
    return s if len(s) <= limit else "..." + s[-limit:]
