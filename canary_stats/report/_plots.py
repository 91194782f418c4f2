"""The report's figures as inline SVG (matplotlib, no pyplot, no GUI backend).

Figures are built with `matplotlib.figure.Figure` directly (so no global pyplot
state and no display is involved) and saved as SVG with text kept as text. The
SVG is trimmed for inlining in HTML: no XML prolog, no DOCTYPE, no namespace
URLs, and every id prefixed per figure so several figures on one page never
share an id.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from ._model import BaselineWeek, EffectSize, RolloutSummary

__all__ = ["decision_svg", "effects_svg", "trend_svg"]

_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
_OUTCOME = {"promoted": "#2e7d32", "rolled_back": "#c62828", "in progress": "#9e6a00"}


def _style() -> AbstractContextManager[None]:
    return matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: smaller, searchable, crisp
            "svg.hashsalt": "canary-stats-report",  # stable ids: same report, same bytes
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def _svg(fig: Figure, prefix: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    if ids:
        names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        text = re.sub(rf'\bid="({names})"', rf'id="{prefix}-\1"', text)
        text = re.sub(rf"#({names})\b", rf"#{prefix}-\1", text)
    # Drop the fixed size: CSS scales the figure to the page width.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def trend_svg(baseline: Sequence[BaselineWeek]) -> str:
    """Four small panels: the stable cohort's metrics week by week."""
    with _style():
        fig = _figure(9.0, 4.6)
        axes = fig.subplots(2, 2, sharex=True).ravel()
        labels = [w.week for w in baseline]
        x = list(range(len(baseline)))
        panels = (
            ("success rate (%)", [_scaled(w.success_rate, 100) for w in baseline]),
            ("p95 latency (ms)", [_scaled(w.p95_latency_ms) for w in baseline]),
            ("tokens per task", [_scaled(w.tokens_per_task) for w in baseline]),
            ("eval score", [_scaled(w.eval_score) for w in baseline]),
        )
        for ax, colour, (title, ys) in zip(axes, _COLOURS, panels, strict=False):
            ax.plot(x, ys, marker="o", color=colour, linewidth=1.6)
            ax.set_title(title, loc="left", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.4g}"))
            finite = [y for y in ys if math.isfinite(y)]
            if finite and max(finite) - min(finite) <= 1e-9 * max(abs(finite[0]), 1.0):
                # A flat line: give it a visible range instead of float noise for ticks.
                pad = 0.02 * abs(finite[0]) or 0.01
                ax.set_ylim(finite[0] - pad, finite[0] + pad)
            _mark_new_releases(ax, baseline)
        for ax in axes[2:]:
            ax.set_xticks(x, labels, rotation=30, ha="right")
        fig.suptitle(
            "Stable baseline by ISO week (dotted: a new stable release served)",
            x=0.01,
            ha="left",
            fontsize=10,
        )
        return _svg(fig, "trend")


def _scaled(v: float | None, scale: float = 1.0) -> float:
    return math.nan if v is None else v * scale


def _mark_new_releases(ax: Axes, baseline: Sequence[BaselineWeek]) -> None:
    """A dotted line at each week whose stable cohort includes a release not seen before."""
    seen: set[str] = set()
    for k, w in enumerate(baseline):
        new = set(w.releases) - seen
        if new and seen:
            ax.axvline(k, linestyle=":", color="#777777", linewidth=1)
        seen |= set(w.releases)


def effects_svg(effects: Sequence[EffectSize]) -> str:
    """One panel per metric: each release's estimate with its bootstrap interval."""
    shown = [
        e
        for e in effects
        if all(v is not None and math.isfinite(v) for v in (e.estimate, e.low, e.high))
    ]
    metrics = list(dict.fromkeys(e.metric for e in effects))
    versions = list(dict.fromkeys(e.version for e in effects))
    with _style():
        fig = _figure(9.0, 0.9 + 0.45 * max(len(versions), 1))
        axes = fig.subplots(1, max(len(metrics), 1), sharey=True, squeeze=False)[0]
        for ax, metric in zip(axes, metrics, strict=False):
            chosen = [e for e in shown if e.metric == metric]
            first = next((e for e in effects if e.metric == metric), None)
            ratio = first is not None and first.contrast == "ratio"
            scale = 100.0 if metric == "success_rate" else 1.0
            ax.axvline(1.0 if ratio else 0.0, color="#777777", linewidth=1)
            for e in chosen:
                y = versions.index(e.version)
                est, low, high = (scale * v for v in (e.estimate, e.low, e.high) if v is not None)
                ax.errorbar(
                    [est],
                    [y],
                    # A percentile interval may, rarely, not contain the estimate.
                    xerr=[[max(est - low, 0.0)], [max(high - est, 0.0)]],
                    fmt="o",
                    capsize=3,
                    color=_COLOURS[y % len(_COLOURS)],
                )
            label = first.label if first is not None else metric
            ax.set_title(label + (" (pp)" if metric == "success_rate" else ""), fontsize=8)
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(versions)), versions)
        axes[0].set_ylim(-0.6, len(versions) - 0.4)
        axes[0].invert_yaxis()
        return _svg(fig, "effects")


def decision_svg(rollouts: Sequence[RolloutSummary]) -> str:
    """Each rollout's stages as a horizontal bar, hours from its start."""
    with _style():
        fig = _figure(9.0, 0.9 + 0.5 * max(len(rollouts), 1))
        ax = fig.subplots()
        for y, r in enumerate(rollouts):
            for s in r.stages:
                if s.minutes is None:
                    continue
                left = (s.start - r.started_at).total_seconds() / 3600
                ax.barh(
                    y,
                    s.minutes / 60,
                    left=left,
                    color=_COLOURS[s.stage % len(_COLOURS)],
                    edgecolor="white",
                    height=0.6,
                )
                if s.minutes >= 45:
                    ax.text(
                        left + s.minutes / 120,
                        y,
                        f"{s.traffic or 0:g}%",
                        ha="center",
                        va="center",
                        color="white",
                        fontsize=7,
                    )
            end = (r.decision_minutes or 0) / 60
            ax.text(
                end,
                y,
                f"  {r.outcome.replace('_', ' ')}",
                va="center",
                fontsize=8,
                color=_OUTCOME.get(r.outcome, "#333333"),
            )
        ax.set_yticks(range(len(rollouts)), [r.version for r in rollouts])
        ax.invert_yaxis()
        ax.set_xlabel("hours since the rollout started (bars: stages, labelled with traffic)")
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
        return _svg(fig, "decision")
