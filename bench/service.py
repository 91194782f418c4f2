"""Judge-service benchmark: `canary-stats serve` over a real socket.

Usage::

    .venv/bin/python -m bench.service            # rewrites its block of docs/benchmarks.md
    .venv/bin/python -m bench.service --quick    # fewer requests, printed only

Target (issue 5): p99 <= 50 ms at 50 concurrent clients asking for a fresh cached
verdict, on 2 cores; and the time of one on-demand verdict (a cache miss). The load
comes from wrk (Debian's package; `make bench` installs it) when present.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from canary_stats.sources.synthetic import Workload, generate_events
from canary_stats.store import Store

from ._doc import DOC, emit

BEGIN = "<!-- BEGIN GENERATED: python -m bench.service -->"
END = "<!-- END GENERATED: service -->"
P99_MAX = 0.050
TOKEN = "bench-token"
#: The background refresh interval during the run (the default is 30 s).
REFRESH_SECONDS = 5
MANIFEST = Path(__file__).resolve().parent.parent / "examples" / "research-agent.manifest.yaml"


def _seed(path: Path) -> None:
    """Two hours of traffic at 10 % canary, ending now (stage 1 of the seed plan)."""
    df = generate_events(
        Workload(),
        canary_share=0.10,
        duration=timedelta(minutes=125),
        start=datetime.now(UTC) - timedelta(minutes=125),
        rng=np.random.default_rng(1),
    )
    df["release"] = np.where(df["cohort"] == "canary", "v2", "v1")
    with Store(path) as store:
        store.ingest_events(df)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(db: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("canary-stats")
    env = {
        **os.environ,
        "CANARY_STATS_TOKEN": TOKEN,
        "CANARY_STATS_LOG_LEVEL": "warning",
        # Recomputed several times under load, so the tail includes the refresher's work.
        "CANARY_STATS_REFRESH_INTERVAL": str(REFRESH_SECONDS),
    }
    cmd = [str(exe), "serve", "--db", str(db), "--port", str(port), "--manifest", str(MANIFEST)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the service did not become ready")


def measure(requests: int, clients: int, seconds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="canary-serve-") as tmp:
        db = Path(tmp) / "judge.duckdb"
        _seed(db)
        port = _free_port()
        proc = _serve(db, port)
        try:
            url = f"http://127.0.0.1:{port}/v1/judge/argo"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            started = (datetime.now(UTC) - timedelta(minutes=121)).isoformat()
            body = {"stable": "v1", "canary": "v2", "stage": 1, "stage_started_at": started}
            t = time.perf_counter()
            first = httpx.post(url, json=body, headers=headers, timeout=10)
            on_demand = time.perf_counter() - t
            assert first.status_code == 200, first.text
            load = _wrk(url, body, clients, seconds) if shutil.which("wrk") else None
            if load is None:
                load = _python_clients(url, body, headers, clients, requests)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return {**load, "on_demand": on_demand, "decision": first.json()["decision"]}


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(url: str, body: dict[str, object], clients: int, seconds: int) -> dict[str, Any]:
    """Load from wrk (C, its own process): the server, not a Python client, is measured."""
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("errors %d %d\\n", summary.errors.status,'
        " summary.errors.connect + summary.errors.read + summary.errors.write"
        " + summary.errors.timeout))\n"
        '  io.write(string.format("max %dus\\n", latency.max))\n'
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", f.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"^errors (\d+) (\d+)", out, re.MULTILINE)
    return {
        "p50": _seconds(pct["50"]),
        "p99": _seconds(pct["99"]),
        "max": _seconds(re.search(r"^max (\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "errors": int(errors.group(1)) + int(errors.group(2)) if errors else -1,
        "tool": f"wrk, 2 threads, {clients} connections, {seconds} s",
    }


def _python_clients(
    url: str, body: dict[str, object], headers: dict[str, str], clients: int, requests: int
) -> dict[str, Any]:
    """Fallback without wrk: Python threads (which share the cores with the server)."""
    local = threading.local()

    def one(_: int) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers=headers, timeout=10)
        t0 = time.perf_counter()
        res = local.client.post(url, json=body)
        assert res.status_code == 200, res.text
        return time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(clients * 2)))
        wall = time.perf_counter()
        times = sorted(pool.map(one, range(requests)))
        wall = time.perf_counter() - wall
    return {
        "p50": statistics.median(times),
        "p99": times[int(0.99 * (len(times) - 1))],
        "max": times[-1],
        "rate": requests / wall,
        "errors": 0,
        "tool": f"{clients} Python client threads in the benchmark process",
    }


def render(r: dict[str, Any], *, clients: int, quick: bool) -> str:
    ms = {k: f"{1000 * float(r[k]):,.1f} ms" for k in ("on_demand", "p50", "p99", "max")}
    met = "**met**" if float(r["p99"]) <= P99_MAX else "**not met**"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            BEGIN,
            "",
            "## 4. Judge service",
            "",
            f"Generated by `python -m bench.service{' --quick' if quick else ''}` on {when}; "
            f"{os.cpu_count()} CPUs. `canary-stats serve` in its own process; load from "
            f"{r['tool']} (on the same cores), posting Argo requests for one release whose "
            f"verdict is cached (`X-Canary-Stats-Cache: hit`) while the background refresh "
            f"recomputes it every {REFRESH_SECONDS} s; {r['errors']} errors.",
            "",
            "| target | measured | verdict |",
            "|---|---|---|",
            f"| p99 ≤ 50 ms at {clients} concurrent clients, cached verdict | {ms['p99']} | "
            f"{'(quick run)' if quick else met} |",
            "",
            "| measurement | value |",
            "|---|---|",
            f"| p50 | {ms['p50']} |",
            f"| p99 | {ms['p99']} |",
            f"| slowest | {ms['max']} |",
            f"| throughput | {float(r['rate']):,.0f} requests/s |",
            f"| first request (on-demand verdict, cache empty) | {ms['on_demand']} "
            f"({r['decision']}) |",
            "",
            END,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer requests; print only")
    p.add_argument("--output", type=Path, default=None, help=f"markdown file (default {DOC})")
    args = p.parse_args(argv)
    requests, clients, seconds = (500, 50, 5) if args.quick else (5000, 50, 20)
    result = measure(requests, clients, seconds)
    text = render(result, clients=clients, quick=args.quick)
    emit(text, args.output or (None if args.quick else DOC), BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
