"""Can the split be trusted? The sample-ratio check on the unit the router assigns.

The router assigns *users* (sticky hashing), so the planned share is a share of
users, and that is what is tested when the data carries user ids: distinct
users per cohort, each counted once (Fabijan et al., KDD 2019), with the exact
beta-binomial test of `stats.sample_ratio_mismatch`. Which users show up
depends on their activity, never on their cohort, so the count is binomial
however bursty or heavy-tailed the users are.

Without user ids (Prometheus aggregates, events without ``user_id``) only task
counts are left, and they are over-dispersed in two ways. Tasks come in bursts,
which a quasi-binomial scale measured on the windows absorbs (the counts are
divided by it). And a heavy user sends all its tasks to one cohort for the
whole stage, so the canary's share of tasks is itself random around the planned
share: with Zipf activity (rank^-1.1 over 5000 users) the canary's task share
at 10 % lies anywhere from 3.6 % to 32 % in 99.5 % of assignments. That part
does not shrink with more data, per-window dispersion cannot see it (the same
users are heavy in every window), and no test on task totals can tell it from
a real mismatch smaller than itself. So the null of the task test is that
spread, ``Beta(p k, (1 - p) k)`` with ``k = 1 / herfindahl - 1`` (the users'
assumed concentration, `HERFINDAHL`), against a wide alternative: it proves
only mismatches larger than heavy users can cause (a canary given a tenth, or
many times, its traffic).

``stability=True`` adds `stats.share_stability`: the canary's share of each
window's tasks must stay where it was, as it does while the same users keep
their habits, so a canary that starts dropping tasks or a split that moves
during the stage is proven whatever the level (and a canary losing tasks of
the users it serves keeps its users, so only this part sees that). It is off
by default because heavy users do not keep their habits: users that come and
go in sessions move the share as a fault would, and in seeded runs with
sessions of the heaviest users it flagged most healthy stages.
"""

from __future__ import annotations

import math

import numpy as np

from . import stats
from .summary import Summary

__all__ = ["HERFINDAHL", "LEVEL_CONCENTRATION", "split_check"]

#: Default Herfindahl index ``sum_i w_i^2`` of the users' traffic shares ``w_i``
#: assumed when users are unknown: 25 equally active users' worth. Zipf activity
#: rank^-1.1 over 5000 users has 0.037; `sources.realistic.UserWorkload` (a
#: Zipf–Mandelbrot offset of 20) has 0.0023. Larger is more tolerant.
HERFINDAHL = 0.04
#: Concentration of the level test's alternative, ``Beta(p k, (1 - p) k)``: wide,
#: so that it favours the gross mismatches the null's spread leaves provable.
LEVEL_CONCENTRATION = 1.0
#: The latest share reported is that of the last quarter of the windows.
_RECENT = 0.25


def split_check(
    summary: Summary,
    expected_share: float,
    *,
    alpha: float,
    herfindahl: float = HERFINDAHL,
    stability: bool = False,
) -> stats.SampleRatioResult:
    """Test one stage's split against the planned canary share.

    Parameters
    ----------
    summary : Summary
        One stage's data (one planned share; scalar fields). Its cohorts'
        ``users`` (NaN when unknown) choose the unit; its ``window_tasks`` give
        the task test its dispersion (and the stability part its windows).
    expected_share : float
        Planned canary share of users, in (0, 1).
    alpha : float
        Level of the mismatch decision (the policy's ``srm_alpha``), valid over
        all looks of the stage.
    herfindahl : float, default: `HERFINDAHL`
        Used without user ids only: how concentrated the users' traffic is assumed
        to be (see `stats.sample_ratio_mismatch`).
    stability : bool, default: False
        Also test that the canary's share of tasks stayed the same over the
        stage's windows (`stats.share_stability`; the two e-values are averaged).
        Only for traffic whose users keep steady habits over a stage.

    Returns
    -------
    stats.SampleRatioResult
        ``unit`` is ``"users"`` or ``"tasks"``; ``observed_share`` the canary's share
        of that unit; ``log_evalue`` and ``pvalue`` those of the test (the average
        of the parts' e-values with ``stability``); ``recent_share`` the canary's
        share of the tasks of the latest quarter of the windows (NaN without them).
    """
    p = float(expected_share)
    st, ca = summary.stable, summary.canary
    windows = summary.window_tasks
    if windows is not None and not len(windows):
        windows = None
    users = math.isfinite(float(st.users)) and math.isfinite(float(ca.users))
    if users:
        count = stats.sample_ratio_mismatch(st.users, ca.users, expected_share=p, alpha=alpha)
    else:
        phi = 1.0 if windows is None else stats.window_dispersion(windows[:, 1], windows.sum(1))
        count = stats.sample_ratio_mismatch(
            st.tasks,
            ca.tasks,
            expected_share=p,
            alpha=alpha,
            concentration=LEVEL_CONCENTRATION,
            dispersion=phi,
            herfindahl=herfindahl,
        )
    log_e = float(count.log_evalue)
    recent = math.nan
    if windows is not None:
        if stability:
            steady = stats.share_stability(*windows.T, alpha=alpha, expected_share=p)
            log_e = float(np.logaddexp(log_e, steady.log_evalue) - math.log(2.0))
        latest = windows[-max(1, math.ceil(_RECENT * len(windows))) :].sum(axis=0)
        recent = float(latest[1] / latest.sum()) if latest.sum() > 0 else math.nan
    return stats.SampleRatioResult(
        observed_share=count.observed_share,
        expected_share=p,
        log_evalue=log_e,
        pvalue=min(1.0, math.exp(-log_e)),
        mismatch=log_e >= math.log(1.0 / alpha),
        unit="users" if users else "tasks",
        recent_share=recent,
    )
