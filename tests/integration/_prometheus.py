"""Real servers for the Prometheus tests: a backfilled Prometheus and a tiny HTTP stub.

`backfill_events` renders events as OpenMetrics and backfills a TSDB with
``promtool``; `PrometheusServer` serves it from a ``prometheus`` process on a free
loopback port, stopped on exit whatever happens. `StubServer` answers with whatever
its ``respond`` function returns; as a proxy in front of the real Prometheus it
produces what a real server will not on demand: warnings (a partial answer),
slowness, a wrong result type, errors.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from canary_stats.sources.openmetrics import write_openmetrics

__all__ = [
    "MISSING_BINARIES",
    "PrometheusServer",
    "Reply",
    "Request",
    "StubServer",
    "backfill_events",
    "forward",
    "free_port",
    "html_reply",
    "json_reply",
    "prometheus_binaries",
]

MISSING_BINARIES = (
    "`prometheus` and `promtool` must be on PATH for the integration tests; "
    "`make test` installs them (Debian package `prometheus`): run `make prometheus`."
)


def prometheus_binaries() -> tuple[str, str] | None:
    """Paths of ``prometheus`` and ``promtool``, or None when either is missing."""
    server, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (server, tool) if server and tool else None


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backfill_events(
    events: pd.DataFrame, versions: Mapping[str, str], tsdb: Path, **options: Any
) -> Path:
    """Render ``events`` as OpenMetrics (`write_openmetrics` options) and backfill ``tsdb``."""
    binaries = prometheus_binaries()
    if binaries is None:
        raise RuntimeError(MISSING_BINARIES)
    tsdb.parent.mkdir(parents=True, exist_ok=True)
    text = tsdb.with_name(tsdb.name + ".om")
    write_openmetrics(events, versions, text, **options)
    done = subprocess.run(
        [binaries[1], "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(text), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {done.stderr.strip()[-2000:]}")
    return tsdb


class PrometheusServer:
    """``prometheus`` serving ``tsdb`` on a free loopback port while the block runs.

    Stopped on exit whatever happened inside, killed if it does not stop in 10 s.
    """

    def __init__(self, tsdb: Path, *, startup_s: float = 30.0) -> None:
        self.tsdb = tsdb
        self.startup_s = startup_s
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        binaries = prometheus_binaries()
        if binaries is None:
            raise RuntimeError(MISSING_BINARIES)
        config = self.tsdb.with_name(self.tsdb.name + ".yml")
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        self._log = self.tsdb.with_name(self.tsdb.name + ".log")
        port = free_port()
        with self._log.open("w") as log:  # the child keeps its own copy of the descriptor
            self._proc = subprocess.Popen(
                [
                    binaries[0],
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.tsdb}",
                    "--storage.tsdb.retention.time=100y",  # the history is fixed, in the past
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._proc.returncode}: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass  # not listening or not ready yet (URLError is an OSError)
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {self.startup_s:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        return self._log.read_text()[-2000:]


@dataclass(frozen=True)
class Request:
    """What the stub received: method, path, query-string and form parameters, headers."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(doc: Any, status: int = 200, *, delay_s: float = 0.0) -> Reply:
    return Reply(status, json.dumps(doc).encode(), delay_s=delay_s)


def html_reply(status: int = 200) -> Reply:
    """What a web server that is not Prometheus answers."""
    return Reply(status, b"<html><body><h1>It works!</h1></body></html>", "text/html")


def forward(upstream: str, request: Request) -> Reply:
    """Send ``request`` on to ``upstream`` and return its answer unchanged."""
    target = urllib.request.Request(
        upstream + request.path,
        data=request.body if request.method == "POST" else None,
        method=request.method,
        headers={"Content-Type": request.headers.get("Content-Type", "text/plain")},
    )
    try:
        with urllib.request.urlopen(target, timeout=10) as resp:
            return Reply(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read(), err.headers.get("Content-Type", ""))


@dataclass
class StubServer:
    """A threaded HTTP server on a free loopback port; ``respond`` makes each answer."""

    respond: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                query = self.path.partition("?")[2]
                params = dict(urllib.parse.parse_qsl(query))
                if self.headers.get("Content-Type", "").startswith("application/x-www-form"):
                    params.update(urllib.parse.parse_qsl(body.decode()))
                req = Request(self.command, self.path, params, dict(self.headers), body)
                stub.requests.append(req)
                reply = stub.respond(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left: that was the point

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
