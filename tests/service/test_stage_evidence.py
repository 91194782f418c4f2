"""The service keeps evidence across stages: from the caller's stage starts or its own records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from .conftest import MINUTES, PROMOTE, RunningService, iso, settings_for


def test_the_callers_stage_starts_and_the_services_records(db: Path) -> None:
    now = datetime.now(UTC)
    stage0, stage1 = now - timedelta(minutes=MINUTES), now - timedelta(minutes=60)
    with RunningService(settings_for(db, refresh_interval=3600)) as svc:
        bad = svc.argo(PROMOTE.argo_body(stage_starts=[iso(stage0), iso(stage0)]))
        assert bad.status_code == 422 and "stage_starts" in bad.text
        alone = svc.argo(PROMOTE.argo_body(stage_started_at=iso(stage1))).json()
        given = svc.argo(
            PROMOTE.argo_body(stage_started_at=iso(stage1), stage_starts=[iso(stage0)])
        ).json()
        for name, m in given["metrics"].items():
            assert "evidence kept over 2 stages" in m["method"], name
            assert m["n_canary"] > alone["metrics"][name]["n_canary"]
        # Without stage_starts the service's own record of stage 0 is the boundary.
        seen0 = svc.argo(PROMOTE.argo_body(stage="0", stage_started_at=iso(stage0)))
        assert seen0.status_code == 200
        later = now - timedelta(minutes=59)  # another stage 1 start: not a cached verdict
        recorded = svc.argo(PROMOTE.argo_body(stage_started_at=iso(later))).json()
        assert all("over 2 stages" in m["method"] for m in recorded["metrics"].values())
