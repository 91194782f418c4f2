"""Settings: init > environment > YAML, the token, and refusing to start without one."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from canary_stats.cli import _serve, app  # noqa: F401  (_serve registers `serve`)
from canary_stats.errors import InputError
from canary_stats.service import load_settings
from canary_stats.store import Store

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "TOKEN_FILE", "PORT", "DB", "CONFIG_FILE", "INSECURE_NO_AUTH"):
        monkeypatch.delenv(f"CANARY_STATS_{name}", raising=False)


def test_no_token_refuses_to_start() -> None:
    with pytest.raises(InputError, match=r"^token: no token configured: set CANARY_STATS_TOKEN"):
        load_settings()
    assert load_settings(insecure_no_auth=True).token is None


def test_serve_without_a_token_exits_2_with_the_reason(tmp_path: Path) -> None:
    res = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.duckdb")])
    assert res.exit_code == 2
    assert "no token configured" in res.output and "--insecure-no-auth" in res.output
    assert not (tmp_path / "x.duckdb").exists()


def test_init_beats_environment_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        "port: 9001\nhost: 0.0.0.0\nrefresh_interval: 10\nwindow: 5m\n"
        "prometheus: {url: 'http://prom:9090', cohort_label: rollouts_pod_template_hash}\n"
        "token: from-yaml\n"
    )
    monkeypatch.setenv("CANARY_STATS_PORT", "9002")
    monkeypatch.setenv("CANARY_STATS_TOKEN", "from-env")
    settings = load_settings(config)
    assert (settings.port, settings.host, settings.refresh_interval) == (9002, "0.0.0.0", 10)
    assert settings.window == timedelta(minutes=5)
    assert settings.token is not None and settings.token.get_secret_value() == "from-env"
    assert settings.prometheus is not None and settings.prometheus.url == "http://prom:9090"
    assert load_settings(config, port=9003).port == 9003
    assert settings.stale_seconds == 20


def test_token_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    settings = load_settings(token_file=secret)
    assert settings.token is not None and settings.token.get_secret_value() == "s3cret"
    with pytest.raises(InputError, match="not both"):
        load_settings(token_file=secret, token="x")
    with pytest.raises(InputError, match="cannot read token_file"):
        load_settings(token_file=tmp_path / "missing")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deadline": 10}, r"^deadline: Input should be less than 10"),
        ({"refresh_interval": 0}, r"^refresh_interval: "),
        ({"window": "soon"}, r"^window: expected a duration"),
        ({"prometheus": {"url": "prom:9090"}}, r"^url: expected an http\(s\) URL"),
    ],
)
def test_bad_settings_name_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_settings(insecure_no_auth=True, **options)


def test_unknown_yaml_keys_and_missing_files_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("prot: 9001\n")
    with pytest.raises(InputError, match=r"^prot: Extra inputs are not permitted"):
        load_settings(config, insecure_no_auth=True)
    with pytest.raises(InputError, match="no such file"):
        load_settings(tmp_path / "missing.yaml")


def test_serve_runs_one_process_until_terminated(tmp_path: Path) -> None:
    """`canary-stats serve` for real: answers on its port, closes the store on SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "served.duckdb"
    # Until canary_stats.cli imports _serve, register the command by importing it here.
    code = "from canary_stats.cli import _serve, app; app()"
    args = ["serve", "--db", str(db), "--port", str(port), "--insecure-no-auth"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                res = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert res.status_code == 200 and res.json()["ready"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    with Store(db) as store:  # the lock was released
        assert store.count("verdicts") == 0
