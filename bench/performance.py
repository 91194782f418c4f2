"""Wall time and peak memory of `canary_stats.analyze` on raw events.

Each size runs in a fresh Python process (``python -m bench.performance --worker N``)
so that peak memory is not polluted by earlier, larger sizes. Events are built
directly with numpy (the generator's per-row ``request_id`` strings make
`generate_events` slow at 10M rows) with the raw-event columns of the data
contract: ``ts``, ``cohort``, ``success``, ``latency_ms``, ``tokens``, ``eval_score``.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import io
import json
import math
import os
import pstats
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from canary_stats import analyze, judge, summarize

from .scenarios import seed_policy

__all__ = ["Measurement", "make_events", "measure", "profile", "run"]

STAGE = 1  # the brief's call: analyze(events, policy, stage=1)

#: tracemalloc records every allocation; past 1M rows per cohort its own
#: bookkeeping for tens of millions of string objects distorts time and memory.
TRACE_UP_TO = 1_000_000


#: Users per cohort when events carry ``user_id`` (Zipf-like activity, as the
#: realistic workloads): each user is in one cohort, as sticky routing makes it.
USERS_PER_COHORT = 10_000


def make_events(n_per_cohort: int, seed: int = 0, *, users: bool = False) -> pd.DataFrame:
    """Raw events for ``n_per_cohort`` stable and as many canary tasks over two hours.

    Distributions follow the synthetic workload's defaults (success 0.985,
    lognormal latency and tokens, beta eval scores on 80 % of tasks). With
    ``users``, a ``user_id`` on every row: `USERS_PER_COHORT` users per cohort,
    each task's user drawn with Zipf-like weights ``(rank + 20) ** -1.1``.
    """
    rng = np.random.default_rng(seed)
    n = 2 * n_per_cohort
    canary = np.zeros(n, dtype=bool)
    canary[n_per_cohort:] = True
    rng.shuffle(canary)
    start = pd.Timestamp("2026-11-23T08:00:00", tz="UTC").value
    offsets = np.sort(rng.integers(0, 2 * 3600 * 10**9, size=n))
    score = rng.beta(0.93 * 30, 0.07 * 30, size=n)
    score[rng.random(n) >= 0.8] = np.nan
    extra: dict[str, np.ndarray] = {}
    if users:
        weight = (np.arange(USERS_PER_COHORT) + 20.0) ** -1.1
        rank = rng.choice(USERS_PER_COHORT, size=n, p=weight / weight.sum())
        extra["user_id"] = np.char.add(np.where(canary, "c", "s"), rank.astype(str))
    return pd.DataFrame(
        {
            **extra,
            "ts": pd.to_datetime(start + offsets, utc=True),
            "cohort": np.where(canary, "canary", "stable"),
            "success": rng.random(n) < 0.985,
            "latency_ms": np.round(2500.0 * np.exp(0.5 * rng.standard_normal(n)), 1),
            "tokens": np.round(3000.0 * np.exp(0.8 * rng.standard_normal(n))),
            "eval_score": score,
        }
    )


def _rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim_heap() -> None:
    """Hand freed heap back to the OS so the RSS baseline is not inflated (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _PeakRSS:
    """Sample the RSS in a background thread; ``peak`` is the largest seen."""

    def __init__(self, every: float = 0.002) -> None:
        self.every = every
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.every)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _timed(fns: list[Callable[[], Any]], repeats: int) -> list[list[float]]:
    """Wall times of each function, interleaved so that a busy spell hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return times


@dataclass(frozen=True, slots=True)
class Measurement:
    """`analyze` on one input size (times in seconds, memory in bytes)."""

    n_per_cohort: int
    repeats: int
    median: float
    minimum: float
    judge_median: float  # sufficient statistics -> verdict; the rest is `summarize`
    categorical: bool  # `cohort` as a pandas Categorical instead of strings
    users: bool  # a `user_id` on every row (user-level design effects and split)
    frame_bytes: int  # memory of the input DataFrame (deep)
    peak_rss_increase: float  # RSS above the level before the call (all allocators)
    peak_traced: float  # tracemalloc peak during one call (Python and numpy); NaN if skipped
    decision: str
    load: float  # 1-minute load average at the end


def measure(
    n_per_cohort: int, repeats: int, *, categorical: bool = False, users: bool = False
) -> Measurement:
    """Time `analyze` ``repeats`` times on fixed data and record its peak memory."""
    policy = seed_policy()
    events = make_events(n_per_cohort, users=users)
    if categorical:  # what a dictionary-encoded source hands over: no strings to hash
        events["cohort"] = events["cohort"].astype("category")
    frame_bytes = int(events.memory_usage(deep=True).sum())
    # Memory first, on a cold call: later calls reuse heap that an allocator kept.
    gc.collect()
    _trim_heap()
    base = _rss()
    with _PeakRSS() as peak:
        verdict = analyze(events, policy, stage=STAGE)
    summary = summarize(events)
    elapsed = summary.span
    t_all, t_judge = _timed(
        [
            lambda: analyze(events, policy, stage=STAGE),
            lambda: judge(summary, policy, stage=STAGE, elapsed=elapsed),
        ],
        repeats,
    )
    traced = math.nan
    if n_per_cohort <= TRACE_UP_TO:
        gc.collect()
        tracemalloc.start()
        analyze(events, policy, stage=STAGE)
        traced = float(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return Measurement(
        n_per_cohort=n_per_cohort,
        repeats=repeats,
        median=float(np.median(t_all)),
        minimum=float(np.min(t_all)),
        judge_median=float(np.median(t_judge)),
        categorical=categorical,
        users=users,
        frame_bytes=frame_bytes,
        peak_rss_increase=float(max(peak.peak - base, 0)),
        peak_traced=traced,
        decision=verdict.decision,
        load=os.getloadavg()[0],
    )


def profile(n_per_cohort: int, top: int = 12) -> list[dict[str, Any]]:
    """The functions where `analyze` spends its time on one input size (cProfile)."""
    policy = seed_policy()
    events = make_events(n_per_cohort)
    analyze(events, policy, stage=STAGE)
    prof = cProfile.Profile()
    prof.enable()
    analyze(events, policy, stage=STAGE)
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        where = file.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append(
            {"function": f"{where}:{line}({func})", "calls": calls, "tottime": tt, "cumtime": ct}
        )
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return [{**r, "share": r["tottime"] / total} for r in rows[:top]]


def _worker(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--categorical", action="store_true")
    p.add_argument("--users", action="store_true")
    args = p.parse_args(argv)
    if args.profile:
        print(json.dumps(profile(args.worker)))
    else:
        m = measure(args.worker, args.repeats, categorical=args.categorical, users=args.users)
        print(json.dumps(asdict(m)))


def _spawn(args: list[str], timeout: float) -> Any:
    cmd = [sys.executable, "-m", "bench.performance", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True, slots=True)
class PerformanceResult:
    """All sizes, the failures (too slow or too big) and the profile at 1M per cohort."""

    measurements: list[Measurement]
    failures: dict[int, str]
    profile_n: int
    profile: list[dict[str, Any]]


def run(sizes: list[int], *, profile_n: int | None = None) -> PerformanceResult:
    """Measure every size in its own process; a size that fails is recorded, not fatal.

    The profile size (default: the largest up to 1M) is also measured with a
    categorical ``cohort`` column, and with a ``user_id`` on every row.
    """
    out: list[Measurement] = []
    failures: dict[int, str] = {}
    n_prof = profile_n or max(s for s in sizes if s <= 1_000_000)
    variants = [(n, "string") for n in sizes] + [(n_prof, "categorical"), (n_prof, "user_id")]
    for n, what in variants:
        repeats = 7 if n <= 1_000_000 else 3
        print(f"  analyze on {n:,} + {n:,} events, {what} ...", file=sys.stderr, flush=True)
        args = ["--worker", str(n), "--repeats", str(repeats)]
        args += {"string": [], "categorical": ["--categorical"], "user_id": ["--users"]}[what]
        try:
            out.append(Measurement(**_spawn(args, 1800)))
        except (RuntimeError, subprocess.TimeoutExpired, MemoryError) as exc:
            failures[n] = str(exc).strip().splitlines()[-1][:300]
    prof = _spawn(["--worker", str(n_prof), "--profile"], 1800)
    return PerformanceResult(out, failures, n_prof, prof)


def loglog_slope(ms: list[Measurement]) -> float:
    """Least-squares slope of log(time) on log(size) over sizes >= 100k (1 = linear)."""
    pts = [
        (math.log(m.n_per_cohort), math.log(m.median))
        for m in ms
        if m.n_per_cohort >= 100_000 and not m.categorical
    ]
    if len(pts) < 2:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


if __name__ == "__main__":
    _worker(sys.argv[1:])
