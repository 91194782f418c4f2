"""Settings of the judge service: init (CLI options) > environment > YAML file.

Environment variables carry the prefix ``CANARY_STATS_`` (``CANARY_STATS_TOKEN``,
``CANARY_STATS_DB``, ``CANARY_STATS_PROMETHEUS__URL`` for nested fields). The YAML
file (``canary-stats serve --config FILE``) holds the same keys, e.g.::

    db: data/canary_stats.duckdb
    manifest: examples/research-agent.manifest.yaml
    token_file: /var/run/secrets/canary-stats/token
    prometheus: {url: http://prometheus:9090, cohort_label: version}
    refresh_interval: 30

Relative paths are relative to the working directory of the process.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ..errors import InputError
from ..policy import parse_duration
from ..sources.prometheus import PrometheusConfig
from ..store import DEFAULT_PATH

__all__ = ["Settings", "load_settings"]

_ENV_PREFIX = "CANARY_STATS_"

NO_TOKEN = (
    "no token configured: set CANARY_STATS_TOKEN or token_file (in --config or "
    "CANARY_STATS_TOKEN_FILE), or pass --insecure-no-auth to serve without authentication "
    "(only behind a network policy that admits nothing but the rollout controller)"
)


def _duration(value: Any) -> Any:
    return parse_duration(value, "window") if isinstance(value, str) else value


class Settings(BaseSettings):
    """Everything `create_app` needs; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    #: The YAML file these settings were read from (``--config``); not read from itself.
    config_file: Path | None = None
    db: Path = DEFAULT_PATH
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: The release manifest whose rollout plan judges requests that name none.
    manifest: Path | None = None
    #: Manifests named by requests must lie inside this directory (default: the default
    #: manifest's directory, else the working directory), so a caller cannot make the
    #: service read arbitrary files.
    manifest_dir: Path | None = None
    #: Where to pull fresh windows from; without it the service judges what the store holds.
    prometheus: PrometheusConfig | None = None
    #: The same, read from a file like ``examples/sources/prometheus.yaml``.
    prometheus_file: Path | None = None
    #: Width of the windows pulled from Prometheus.
    window: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(minutes=1)
    #: Seconds between background recomputations of every active release.
    refresh_interval: float = Field(default=30.0, gt=0)
    #: Seconds a request may wait for a verdict computed on demand; callers time out at 10 s.
    deadline: float = Field(default=5.0, gt=0, lt=10)
    #: A cached verdict older than this (seconds) is recomputed on demand
    #: (default: twice the refresh interval).
    stale_after: float | None = Field(default=None, gt=0)
    #: Releases asked about within this many minutes are refreshed in the background.
    active_minutes: float = Field(default=30.0, gt=0)
    token: SecretStr | None = None
    token_file: Path | None = None
    insecure_no_auth: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        given = getattr(init_settings, "init_kwargs", {}).get("config_file")
        path = given or os.environ.get(f"{_ENV_PREFIX}CONFIG_FILE")
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=Path(path)))
        return tuple(sources)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.prometheus is not None and self.prometheus_file is not None:
            raise ValueError("give prometheus or prometheus_file, not both")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read token_file {self.token_file}: {exc.strerror}"
                ) from None
            object.__setattr__(self, "token", SecretStr(text))
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError("the token is empty")
        if self.token is None and not self.insecure_no_auth:
            raise ValueError(NO_TOKEN)
        if self.prometheus_file is not None:
            object.__setattr__(self, "prometheus", PrometheusConfig.from_file(self.prometheus_file))
        return self

    @property
    def stale_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 2 * self.refresh_interval

    @property
    def manifest_root(self) -> Path:
        if self.manifest_dir is not None:
            return self.manifest_dir.resolve()
        return (self.manifest.parent if self.manifest else Path.cwd()).resolve()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` > environment > ``config_file``, or an `InputError`.

    The error names the first offending setting, e.g. ``token: no token configured ...``.
    """
    if config_file is not None and not config_file.is_file():
        raise InputError("--config", f"{config_file}: no such file")
    try:
        return Settings(config_file=config_file, **overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):
            raise cause from None
        field = ".".join(str(p) for p in err["loc"]) or _field_of(err["msg"])
        raise InputError(field, err["msg"].removeprefix("Value error, ")) from None


def _field_of(message: str) -> str:
    """The setting a whole-model error is about (they carry no location)."""
    return "token" if "token" in message else "settings"
