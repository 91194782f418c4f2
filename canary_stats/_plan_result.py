"""What `check_plan` returns: per stage and guardrail, and the plan as text and JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["GuardrailPlan", "Plan", "StageGuardrail", "StagePlan"]


@dataclass(frozen=True, slots=True)
class StageGuardrail:
    """One guardrail at one stage.

    Attributes
    ----------
    guardrail : str
    canary, stable : float
        Expected observations by the stage's end, over all stages so far (evidence
        carries); ``stable`` is 0 for a guardrail on the canary alone.
    enough : bool
        Whether the guardrail's minimum is reached by the stage's end.
    detect_minutes : float or None
        Minutes into the stage until a regression there since the rollout began is
        rolled back, with the evidence of the earlier stages (0: rolled back before
        the stage; None: not within a month at this traffic, or none defined).
    prove_minutes : float or None
        Prove stages only: minutes into the stage until a healthy canary is proven
        within the margin with its minimum (None: never, or a guard stage).
    """

    guardrail: str
    canary: float
    stable: float
    enough: bool
    detect_minutes: float | None
    prove_minutes: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f: _round(getattr(self, f)) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One analysed stage: its traffic, mode, expected length and guardrails.

    ``minutes`` is its expected length: the planned ``duration_minutes``, or longer
    when the cohort's minimum (or, in a prove stage, the proof) takes longer.
    ``canary_tasks``/``stable_tasks`` are cumulative; ``design_effect`` is that of
    the stage's task metrics at its end (1 without users).
    """

    index: int
    traffic: float
    mode: Literal["guard", "prove"]
    duration_minutes: float | None
    start_minute: float
    minutes: float
    canary_tasks: float
    stable_tasks: float
    design_effect: float
    guardrails: tuple[StageGuardrail, ...]

    def describe(self) -> str:
        return _stage_text(self.index, self.traffic, self.duration_minutes)

    def to_dict(self) -> dict[str, Any]:
        out = {f: _round(getattr(self, f)) for f in self.__slots__ if f != "guardrails"}
        return out | {"guardrails": [r.to_dict() for r in self.guardrails]}


@dataclass(frozen=True, slots=True)
class GuardrailPlan:
    """One guardrail over the plan.

    ``healthy`` and ``regression`` are the canary's values assumed (for rules against
    stable: the ratio or difference). The regression is one margin beyond the margin:
    twice the margin away from no change (``max_drop: 0.02`` → a drop of 0.04;
    ``max_ratio: 1.15`` → 1.30), and for an absolute bound the bound moved beyond
    itself by its distance from the baseline (``min: 0.97`` at 0.985 → 0.955).
    ``detect_after`` counts minutes from the rollout's start (stages at their
    expected lengths); ``prove_after`` minutes into the last prove stage.
    """

    name: str
    description: str
    healthy: float
    regression: float | None
    enough_from: int | None
    detected_in: int | None
    detect_after: float | None
    prove_after: float | None
    feasible: bool
    why: str | None

    def to_dict(self) -> dict[str, Any]:
        return {f: _round(getattr(self, f)) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class Plan:
    """What `check_plan` expects of a rollout plan.

    ``feasible`` when every stage can show what it must within its planned duration:
    the cohort's minimum tasks in every stage, and in a prove stage every
    guardrail's minimum and its proof within the margin. ``problems`` says why not
    (the guardrail or stage and the numbers); ``warnings`` are the rest: guardrails
    carried forward, regressions caught only at a later stage, few users.
    """

    tasks_per_min: float
    eval_share: float
    users: int | None
    fail_level: float
    pass_level: float
    planned_minutes: float
    expected_minutes: float
    stages: tuple[StagePlan, ...]
    guardrails: tuple[GuardrailPlan, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {f: _round(getattr(self, f)) for f in self.__slots__}
        out["stages"] = [s.to_dict() for s in self.stages]
        out["guardrails"] = [g.to_dict() for g in self.guardrails]
        out["problems"], out["warnings"] = list(self.problems), list(self.warnings)
        return out | {"feasible": self.feasible}

    def summary_lines(self) -> list[str]:
        """The plan as text: assumptions, one table per stage, problems and warnings."""
        who = "independent tasks" if self.users is None else f"{self.users} users"
        lines = [
            f"{'feasible' if self.feasible else 'NOT FEASIBLE'} at {self.tasks_per_min:g} "
            f"tasks/min, eval scores on {100 * self.eval_share:g} % of tasks, {who}; "
            f"planned {_fmt_minutes(self.planned_minutes)}, expected "
            f"{_fmt_minutes(self.expected_minutes)}",
            f"levels over the whole rollout: fail {self.fail_level:.4g} per guardrail, "
            f"pass {self.pass_level:.4g}",
            "guardrails (healthy → regression of one margin beyond the margin):",
        ]
        width = max(len(g.description) for g in self.guardrails)
        for g in self.guardrails:
            reg = "—" if g.regression is None else _num(g.regression)
            lines.append(f"  {g.name:<22} {g.description:<{width}}  {_num(g.healthy)} → {reg}")
        head = f"  {'guardrail':<22}{'canary':>9}{'stable':>9}  {'minimum':<9}"
        for s in self.stages:
            lines += ["", f"{s.describe()}, {s.mode}: expected {_fmt_minutes(s.minutes)}"
                      + (f", design effect {s.design_effect:.2g}" if self.users else ""),
                      head + f"{'rollback of a regression':<26}healthy proven"]  # fmt: skip
            for r in s.guardrails:
                stable = f"{r.stable:>9.0f}" if r.stable else f"{'—':>9}"
                lines.append(
                    f"  {r.guardrail:<22}{r.canary:>9.0f}{stable}  "
                    f"{'yes' if r.enough else 'carried' if s.mode == 'guard' else 'NO':<9}"
                    f"{_detect_text(r.detect_minutes, s.duration_minutes):<26}"
                    f"{'' if s.mode == 'guard' else _in_stage(r.prove_minutes):<16}".rstrip()
                )
        notes = [*(f"not feasible: {p}" for p in self.problems),
                 *(f"warning: {w}" for w in self.warnings)]  # fmt: skip
        return [*lines, "", *notes] if notes else lines


def _stage_text(index: int, traffic: float, duration: float | None) -> str:
    when = f"for {_fmt_minutes(duration)}" if duration else "without a minimum duration"
    return f"stage {index} ({traffic:g} % {when})"


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else v


def _fmt_minutes(m: float | None) -> str:
    if m is None or not math.isfinite(m):
        return "never"
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.3g} h" if m < 48 * 60 else f"{m / 1440:.3g} d"


def _in_stage(m: float | None) -> str:
    return "never" if m is None else "at once" if m < 0.5 else f"after {_fmt_minutes(m)}"


def _detect_text(m: float | None, duration: float | None) -> str:
    if m == 0:
        return "earlier"
    slow = m is not None and duration is not None and m > duration
    return _in_stage(m) + (" (> stage)" if slow else "")


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"
