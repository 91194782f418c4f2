"""What the service keeps in the store besides verdicts: when each stage began.

A caller that does not say when the stage began gets the time the service first
saw that canary at that stage. It is written to ``rollout_transitions`` (state
``stage_seen``, one rollout id per release pair) so a restart keeps it and the
stage's minimum duration is not restarted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ..store import Store
from ..store._schema import first_row

__all__ = ["SEEN", "latest_stage", "newest_data", "rollout_id", "seen_starts", "stage_start"]

#: The ``state`` of the transitions the service writes.
SEEN = "stage_seen"


def rollout_id(stable: str, canary: str) -> str:
    """The pair's id in ``rollout_transitions`` (JSON, so no two pairs share one)."""
    return "judge:" + json.dumps([stable, canary])


def stage_start(
    store: Store,
    *,
    stable: str,
    canary: str,
    stage: int,
    now: datetime,
    traffic: float | None = None,
    manifest: str | None = None,
) -> datetime:
    """When the pair was first seen at ``stage``; records ``now`` if never."""
    rid = rollout_id(stable, canary)
    row = first_row(
        store.con.execute(
            "SELECT min(recorded_at) FROM rollout_transitions "
            "WHERE rollout_id = ? AND state = ? AND stage = ?",
            [rid, SEEN, stage],
        )
    )
    if row is not None and row[0] is not None:
        found: datetime = row[0]
        return found.astimezone(UTC)
    detail = json.dumps({"stable": stable, "canary": canary, "manifest": manifest})
    store.con.execute(
        "INSERT INTO rollout_transitions "
        "SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ? "
        "FROM rollout_transitions WHERE rollout_id = ?",
        [rid, now, SEEN, stage, traffic, detail, rid],
    )
    return now


def seen_starts(store: Store, *, stable: str, canary: str, stage: int) -> list[datetime | None]:
    """When the pair was first seen at each stage ``0 .. stage - 1`` (None if never)."""
    rows = store.con.execute(
        "SELECT stage, min(recorded_at) FROM rollout_transitions "
        "WHERE rollout_id = ? AND state = ? AND stage < ? GROUP BY stage",
        [rollout_id(stable, canary), SEEN, stage],
    ).fetchall()
    found = {int(k): t.astimezone(UTC) for k, t in rows if k is not None and t is not None}
    return [found.get(k) for k in range(stage)]


def newest_data(store: Store, canary: str) -> datetime | None:
    """End of the newest data stored for the canary (raw events or windows)."""
    row = first_row(
        store.con.execute(
            "SELECT max(t) FROM ("
            " SELECT max(ts) AS t FROM events WHERE release = $r"
            " UNION ALL SELECT max(window_end) FROM aggregate_rows WHERE release = $r)",
            {"r": canary},
        )
    )
    if row is None or row[0] is None:
        return None
    newest: datetime = row[0]
    return newest.astimezone(UTC)


def latest_stage(store: Store, *, stable: str, canary: str) -> int | None:
    """The highest stage the pair has been seen at (Flagger's progress), or None."""
    row = first_row(
        store.con.execute(
            "SELECT max(stage) FROM rollout_transitions WHERE rollout_id = ? AND state = ?",
            [rollout_id(stable, canary), SEEN],
        )
    )
    return None if row is None or row[0] is None else int(row[0])
