"""Whether the judge may trust the numbers at all, and whether the canary has gone silent."""

from __future__ import annotations

import math

import numpy as np

from .policy import Policy
from .summary import TOKENS_MAX, Summary

__all__ = ["silent_canary", "untrusted_reason"]


def untrusted_reason(summary: Summary, policy: Policy) -> str | None:
    """Why no number of the summary can be relied on, or None.

    Tokens beyond the manifest's ``max_tokens_per_task`` (or the data contract's
    bound) are corrupt data, and so is a moment that overflowed: either would
    otherwise prove or disprove anything.
    """
    problems = list(summary.issues)
    limit = policy.max_tokens_per_task or TOKENS_MAX
    what = "max_tokens_per_task" if policy.max_tokens_per_task else "the data contract's bound"
    if summary.tokens_max > limit:
        problems.append(f"a task spent {summary.tokens_max:g} tokens, above {what} ({limit:g})")
    for name, c in (("stable", summary.stable), ("canary", summary.canary)):
        for metric, m in (("tokens", c.tokens), ("eval_score", c.eval_score)):
            n, mean, var = (np.asarray(x, dtype=float) for x in (m.n, m.mean, m.var))
            if not np.all(n > 0):
                continue
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
                problems.append(f"{name} {metric}: the mean or variance is not finite")
            elif metric == "tokens" and np.any(mean > limit):
                problems.append(f"{name} mean tokens per task above {what} ({limit:g})")
    return "; ".join(problems) if problems else None


#: Chance that a canary still serving its share finishes no task for that long at one
#: check. It is far below ``srm_alpha`` because the check repeats at every poll (about a
#: thousand over a rollout) and because the router assigns users, whose tasks come in
#: bursts, so real gaps are longer than independent arrivals would make them.
SILENCE_LEVEL = 1e-7
#: And never less than this: a pause of a minute or two is a deploy, not a dead canary.
SILENCE_MIN_MINUTES = 5.0


def silent_canary(summary: Summary, share: float) -> str | None:
    """The canary has finished no task for longer than its share of stable's makes likely.

    With the split at ``share``, ``m`` stable tasks go with about
    ``m * share / (1 - share)`` canary tasks; none at all has probability about
    ``exp(-expected)``, which must fall below `SILENCE_LEVEL` (and the silence last
    `SILENCE_MIN_MINUTES`) before the canary is called silent; the policy's
    ``on_silent_canary`` says what follows.
    """
    quiet = summary.silence
    if quiet is None or share >= 1.0 or quiet.minutes < SILENCE_MIN_MINUTES:
        return None
    expected = quiet.stable_tasks * share / (1.0 - share)
    if expected < math.log(1.0 / SILENCE_LEVEL):
        return None
    never = "no canary tasks in the data yet: " if summary.canary.tasks == 0 else ""
    return (
        f"{never}canary silent for {quiet.minutes:.0f} min: no canary task while stable "
        f"finished {quiet.stable_tasks:.0f} (about {expected:.0f} canary tasks expected)"
    )
