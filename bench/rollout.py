"""Rollout-executor benchmark: from a rollback verdict to no canary traffic.

Usage::

    .venv/bin/python -m bench.rollout            # rewrites its block of docs/benchmarks.md
    .venv/bin/python -m bench.rollout --quick    # fewer repetitions, printed only

Target (issue 6, item 8): with the local backend, less than 1 s from a rollback
verdict until the router sends no task to the canary *and* no canary task is still
in flight. Worker threads route tasks continuously through a `Router` at 50 %; at
the verdict the benchmark calls ``LocalBackend.stop_canary`` and times it. The same
stop through the file and command backends is timed for reference (without
draining, which is the external router's job there).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from canary_stats.rollout import CommandBackend, CommandSettings, FileBackend, LocalBackend, Router

from ._doc import DOC, emit
from ._executor_stop import executor_stops

BEGIN = "<!-- BEGIN GENERATED: python -m bench.rollout -->"
END = "<!-- END GENERATED: rollout -->"
TARGET = 1.0
DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Workload:
    """Worker threads each running one task after another, of uniform duration."""

    label: str
    workers: int
    task_ms: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Stop:
    """One rollback: seconds from the verdict until each condition held."""

    no_new_canary: float  # the last canary task started (0 if none started after it)
    drained: float  # stop_canary returned with no canary task in flight
    in_flight: int  # canary tasks in flight at the verdict
    late_starts: int  # canary tasks started after stop_canary returned (must be 0)


def run_workers(router: Router, workload: Workload, stop: threading.Event,
                starts: list[float], seed: int) -> list[threading.Thread]:  # fmt: skip
    """Start the workers; each records the start time of every canary task."""
    lo, hi = workload.task_ms

    def work(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        while not stop.is_set():
            with router.task(f"user-{rng.randrange(1_000_000)}") as route:
                if route.cohort == "canary":
                    starts.append(time.perf_counter())  # list.append is atomic
                time.sleep(rng.uniform(lo, hi) / 1000)

    threads = [
        threading.Thread(target=work, args=(w,), daemon=True) for w in range(workload.workers)
    ]
    for t in threads:
        t.start()
    return threads


def one_rollback(workload: Workload, seed: int, warmup: float) -> Stop:
    router = Router(stable="v1", canary=f"v2-{seed}", weight=50)
    backend = LocalBackend(router)
    stop, starts = threading.Event(), list[float]()
    threads = run_workers(router, workload, stop, starts, seed)
    try:
        time.sleep(warmup)  # let the workers reach a steady state
        in_flight = router.in_flight()["canary"]
        t0 = time.perf_counter()
        drained = backend.stop_canary(drain_timeout=DRAIN_TIMEOUT)
        t1 = time.perf_counter()
        if not drained:
            raise RuntimeError(f"not drained within {DRAIN_TIMEOUT} s")
        time.sleep(0.02)  # would any worker still start canary work?
        late = sum(s > t1 for s in starts)
        last = max((s for s in starts if s >= t0), default=t0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return Stop(last - t0, t1 - t0, in_flight, late)


def time_stop(
    backend_factory: Callable[[], FileBackend | CommandBackend], repeats: int
) -> list[float]:
    """``stop_canary`` of a fresh, running canary on a file or command backend."""
    times = []
    for i in range(repeats):
        backend = backend_factory()
        backend.set_weight(50, stable="v1", canary=f"v2-{i}")
        t0 = time.perf_counter()
        backend.stop_canary(drain_timeout=DRAIN_TIMEOUT)
        times.append(time.perf_counter() - t0)
    return times


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.1f} ms"


def render(results: dict[Workload, list[Stop]], others: dict[str, list[float]],
           through: list[float], *, quick: bool, repeats: int) -> str:  # fmt: skip
    worst = max(s.drained for stops in results.values() for s in stops)
    headline = next(iter(results.values()))
    met = max(s.drained for s in headline) < TARGET and max(through) < TARGET
    verdict = "(quick run)" if quick else "**met**" if met else "**not met**"
    rows = []
    for w, stops in results.items():
        drained = [s.drained for s in stops]
        no_new = [s.no_new_canary for s in stops]
        rows.append(
            f"| {w.label} | {w.workers} | {w.task_ms[0]:g}–{w.task_ms[1]:g} ms | "
            f"{statistics.median(s.in_flight for s in stops):g} | "
            f"{_ms(statistics.median(no_new))} / {_ms(max(no_new))} | "
            f"{_ms(statistics.median(drained))} / {_ms(max(drained))} | "
            f"{sum(s.late_starts for s in stops)} |"
        )
    other_rows = [
        f"| {what} | {_ms(statistics.median(ts))} | {_ms(max(ts))} | {len(ts)} |"
        for what, ts in others.items()
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = next(iter(results))
    lines = [
        BEGIN,
        "",
        "## 5. Rollout executor",
        "",
        f"Generated by `python -m bench.rollout{' --quick' if quick else ''}` on {when}; "
        f"{os.cpu_count()} CPUs, 1-minute load {os.getloadavg()[0]:.1f} at the end. Rerun "
        "with `.venv/bin/python -m bench.rollout` (this block).",
        "",
        "| target | measured (max over runs) | verdict |",
        "|---|---|---|",
        f"| rollback verdict → canary at 0 through the executor < 1 s (write-ahead record in "
        f"DuckDB, then the local backend) | {_ms(max(through))} (median "
        f"{_ms(statistics.median(through))}) | {verdict} |",
        f"| rollback verdict → no canary traffic and none in flight < 1 s (local backend, "
        f"{head.label}) | {_ms(max(s.drained for s in headline))} | {verdict} |",
        "",
        "| workload | worker threads | task duration | canary tasks in flight at the verdict "
        "(median) | last canary task started, median / max | stopped and drained, median / max "
        "| canary tasks started after the stop |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "| stop without draining | median | max | runs |",
        "|---|---|---|---|",
        *other_rows,
        "",
        f"Setup: per run, a fresh `Router` at 50 % and worker threads that each route one "
        "task after another (`with router.task(key)`, a random user among a million) and "
        "hold it for a uniformly drawn time. After 0.3 s of traffic the verdict arrives and "
        "the clock starts; `LocalBackend.stop_canary(drain_timeout=5)` sets the weight to 0, "
        "refuses canary work and waits until no canary task is in flight. 'Last canary task "
        "started' is the latest start of a canary task seen by the workers after the verdict "
        f"(0 if none). {repeats} runs per workload; the slowest run over all workloads took "
        f"{_ms(worst)}. A stop can only be as fast as the longest canary task still in "
        "flight, as the longer tasks show; real agent tasks last seconds, so their drain "
        "takes as long as the longest one (bounded by `drain_timeout`). The file backend "
        "writes its state file (fsync and rename); the command backend runs `true` as its "
        "stop command (one process start). Through the executor: a scripted judge promotes "
        "the first stage and answers rollback in the second; the time runs from its answer "
        "until the local backend's stop returned, including the executor writing its "
        "`rolling_back` transition to a DuckDB file first (opening the file is most of it).",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repetitions; print only")
    p.add_argument("--output", type=Path, default=None, help=f"markdown file (default {DOC})")
    args = p.parse_args(argv)
    repeats = 5 if args.quick else 30
    workloads = [
        Workload("short tasks", 8, (2.0, 8.0)),
        Workload("longer tasks", 8, (100.0, 400.0)),
    ]
    results: dict[Workload, list[Stop]] = {}
    for w in workloads:
        print(f"{w.label} ...", file=sys.stderr, flush=True)
        results[w] = [one_rollback(w, seed, warmup=0.3) for seed in range(repeats)]
    print("file and command backends ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        others = {
            "file backend (state file written with fsync)": time_stop(
                lambda: FileBackend(Path(tmp) / "router.json"), repeats
            ),
            "command backend (`true` as the stop command)": time_stop(
                lambda: CommandBackend(CommandSettings(set_weight="true", stop_canary="true")),
                repeats,
            ),
        }
    print("through the executor ...", file=sys.stderr, flush=True)
    through = executor_stops(repeats)
    text = render(results, others, through, quick=args.quick, repeats=repeats)
    emit(text, args.output or (None if args.quick else DOC), BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
