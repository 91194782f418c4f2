"""The postmortem entry written when a rollout is rolled back.

It names the guardrail that proved the violation with its estimate and
anytime-valid interval (none for an abort or a judge outage), the reason, the
verdict acted on, and the rollout's whole timeline (its transitions), so the
weekly report and ``canary-stats rollout status`` can tell what happened.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ..store._rollouts import PostmortemRecord
from ._state import RolloutState

__all__ = ["build_postmortem", "describe_postmortem", "failed_guardrail", "fmt_number"]


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def failed_guardrail(
    verdict: dict[str, Any] | None,
) -> tuple[str | None, float | None, float | None, float | None]:
    """The first guardrail with status ``fail``: (name, estimate, low, high)."""
    metrics = (verdict or {}).get("metrics") or {}
    for name, m in metrics.items():
        if isinstance(m, dict) and m.get("status") == "fail":
            interval = m.get("interval")
            low, high = interval[:2] if isinstance(interval, list | tuple) else (None, None)
            return str(name), _number(m.get("estimate")), _number(low), _number(high)
    return None, None, None, None


def build_postmortem(
    state: RolloutState, *, name: str, version: str, stable: str | None, created_at: datetime
) -> PostmortemRecord:
    """The postmortem of a rollout whose log holds its ``rolling_back`` transition."""
    rolling = [t for t in state.transitions if t.state == "rolling_back"]
    detail = rolling[-1].detail if rolling else {}
    verdict = detail.get("verdict")
    guardrail, estimate, low, high = failed_guardrail(verdict)
    return PostmortemRecord(
        rollout_id=state.rollout_id,
        name=name,
        version=version,
        stable_version=stable,
        created_at=created_at,
        guardrail=guardrail,
        estimate=estimate,
        interval_low=low,
        interval_high=high,
        reason=str(detail.get("reason") or "rolled back"),
        verdict=verdict if isinstance(verdict, dict) else None,
        timeline=[t.to_dict() for t in state.transitions],
    )


def describe_postmortem(record: dict[str, Any]) -> list[str]:
    """A few human lines from a postmortem's JSON form (`PostmortemRecord.to_dict`)."""
    lines = [
        f"postmortem: {record['name']} {record['version']} rolled back (stable "
        f"{record.get('stable_version') or 'unknown'}) at {record['created_at']}",
        f"  reason: {record['reason']}",
    ]
    if record.get("guardrail") is not None:
        low, high = record.get("interval") or (None, None)
        lines.append(
            f"  guardrail {record['guardrail']}: estimate {fmt_number(record.get('estimate'))}, "
            f"anytime-valid interval [{fmt_number(low)}, {fmt_number(high)}]"
        )
    return lines


def fmt_number(x: Any) -> str:
    """A number to 4 significant digits; ``n/a`` for anything else (None, NaN's null)."""
    return f"{x:.4g}" if isinstance(x, int | float) else "n/a"
