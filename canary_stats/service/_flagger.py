"""Flagger's hooks: which verdict earns a 2xx ("yes") from which hook type.

Flagger reads only the status: 200-202 mean yes, anything else no
(``contracts.md`` §2.3). So:

========================  ==============================  ===============================
hook                      yes (2xx)                       no (403)
========================  ==============================  ===============================
confirm-rollout           the judge is ready and can      otherwise (Flagger stays
pre-rollout               judge the release               Waiting / counts a failed check)
confirm-traffic-increase  promote                         hold, rollback (weight kept)
confirm-promotion         promote                         hold, rollback (WaitingPromotion)
rollout                   promote, hold                   rollback (counts toward threshold)
rollback                  rollback: roll back now         promote, hold; or not rolling out
post-rollout              always (logged; the release     —
                          stops being refreshed)
event                     always, 202 (logged)            —
========================  ==============================  ===============================

403 is Flagger's own idiom for "not yet" and is never retried; a missing or unusable
release in ``metadata`` is a 422, which Flagger also reads as no.

Flagger sends neither the weight nor a stage, and a hook's ``metadata`` is fixed for
the whole canary. Without ``metadata.stage`` the service counts: a canary starts at
stage 0 and moves to the next stage each time ``confirm-traffic-increase`` answers
yes, recorded in the store so a restart keeps it (``stepWeights`` must then list the
manifest's stage traffic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ._engine import JudgeService
from ._models import Decision, FlaggerHook, FlaggerPayload, HookAnswer

__all__ = ["HookResult", "answer_hook"]

log = logging.getLogger("canary_stats.service")

# Phases in which the canary takes traffic; before them a rollback hook has nothing to judge.
_ROLLING = frozenset({"Progressing", "WaitingPromotion", "Promoting", "Finalising"})

_YES_WHEN: dict[FlaggerHook, frozenset[Decision]] = {
    FlaggerHook.confirm_traffic_increase: frozenset({"promote"}),
    FlaggerHook.confirm_promotion: frozenset({"promote"}),
    FlaggerHook.rollout: frozenset({"promote", "hold"}),
    FlaggerHook.rollback: frozenset({"rollback"}),
}


@dataclass(frozen=True, slots=True)
class HookResult:
    status: int
    body: HookAnswer


def _result(
    hook: FlaggerHook, yes: bool, reason: str, decision: Decision | None = None
) -> HookResult:
    answer = HookAnswer(hook=hook, answer="yes" if yes else "no", decision=decision, reason=reason)
    status = (202 if hook is FlaggerHook.event else 200) if yes else 403
    return HookResult(status, answer)


def answer_hook(service: JudgeService, hook: FlaggerHook, payload: FlaggerPayload) -> HookResult:
    """The answer to one hook call (the caller has checked the token)."""
    meta = payload.metadata
    who = f"{payload.namespace}/{payload.name}"
    if hook is FlaggerHook.event:
        log.info(
            "flagger event %s (%s, %s): %s",
            who,
            payload.phase,
            meta.extra("eventType") or "-",
            meta.extra("eventMessage") or "",
        )
        return _result(hook, True, "event logged")
    if hook is FlaggerHook.post_rollout:
        log.info("flagger rollout of %s ended: %s", who, payload.phase)
        if meta.stable is not None and meta.canary is not None:
            service.forget(meta.stable, meta.canary)
        return _result(hook, True, f"rollout ended ({payload.phase}); logged")
    if meta.stage is None and meta.stable is not None and meta.canary is not None:
        # No fixed stage: follow the canary up its stages, one per granted increase.
        release = meta.release(stage=service.flagger_stage(meta.stable, meta.canary))
    else:
        release = meta.release()
    if hook in (FlaggerHook.confirm_rollout, FlaggerHook.pre_rollout):
        store_open, refresher_alive = service.ready()
        if not (store_open and refresher_alive):
            return _result(hook, False, "the judge is not ready (store or refresher down)")
        service.check(release)
        service.require_known(release.stable)
        return _result(hook, True, f"ready to judge {release.canary} against {release.stable}")
    if hook is FlaggerHook.rollback and payload.phase not in _ROLLING:
        return _result(hook, False, f"no rollback: the canary is not rolling out ({payload.phase})")
    served = service.verdict(release)
    yes = served.decision in _YES_WHEN[hook]
    if yes and hook is FlaggerHook.confirm_traffic_increase and meta.stage is None:
        service.advance(release.stable, release.canary, release.stage + 1)
    return _result(hook, yes, str(served.verdict["reason"]), served.decision)
