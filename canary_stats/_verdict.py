"""The verdict objects returned by `analyze`, and their JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .stats import SampleRatioResult

__all__ = ["GuardrailVerdict", "Verdict"]


def _json(x: float) -> float | None:
    """NaN and infinities have no JSON form: they become ``null``."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class GuardrailVerdict:
    """One guardrail's status at this check, with its evidence."""

    name: str
    metric: str
    rule: str
    limit: float
    margin: float
    contrast: str
    alternative: str
    status: str
    estimate: float
    low: float
    high: float
    n_stable: float
    n_canary: float
    reason: str
    method: str
    resolution: float
    description: str
    enough_data: bool

    def evidence(self) -> str:
        """One sentence: the guardrail, its status and the numbers behind it."""
        n = f"{self.n_canary:.0f} canary" + (
            f" / {self.n_stable:.0f} stable" if self.n_stable else ""
        )
        return (
            f"{self.name} {self.reason} (estimate {self.estimate:.4g}, anytime-valid interval "
            f"[{self.low:.4g}, {self.high:.4g}], {n})"
        )

    def brief(self) -> str:
        """The estimate and interval alone, for tables."""
        return f"{self.name} {self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "estimate": _json(self.estimate),
            "interval": [_json(self.low), _json(self.high)],
            "contrast": self.contrast,
            "rule": self.rule,
            "limit": self.limit,
            "margin": self.margin,
            "n_stable": int(self.n_stable),
            "n_canary": int(self.n_canary),
            "reason": self.reason,
            "method": self.method,
            "resolution": _json(self.resolution),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """promote, hold or rollback, with the reason and the per-guardrail evidence."""

    decision: str
    reason: str
    stage: int
    mode: str
    traffic: float
    elapsed_minutes: float
    metrics: dict[str, GuardrailVerdict]
    srm: SampleRatioResult
    n_stable: float
    n_canary: float
    alpha: float
    alpha_pass: float
    data_issues: tuple[str, ...] = field(default=())
    eta_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the service and the CLI return exactly this."""
        return {
            "decision": self.decision,
            "reason": self.reason,
            "stage": self.stage,
            "mode": self.mode,
            "traffic": self.traffic,
            "elapsed_minutes": round(self.elapsed_minutes, 3),
            "eta_minutes": None if self.eta_minutes is None else round(self.eta_minutes, 1),
            "n_stable": int(self.n_stable),
            "n_canary": int(self.n_canary),
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "sample_ratio": {
                "observed_share": _json(self.srm.observed_share),
                "expected_share": self.srm.expected_share,
                "pvalue": _json(self.srm.pvalue),
                "mismatch": bool(self.srm.mismatch),
            },
            "data_issues": list(self.data_issues),
            "alpha": {
                "fail_per_guardrail_and_stage": self.alpha,
                "pass_per_guardrail": self.alpha_pass,
            },
        }
