"""The demo's releases: the seed manifest under three versions, written beside the store.

The seed manifest (``examples/``) with its prompts and schemas is copied into a
folder of the demo's own; each release differs from it only in its version and,
for the regressed one, the pinned model (the story: a "minor" model upgrade).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sources.synthetic import Regression

__all__ = ["DEMO_RELEASES", "EXAMPLES", "SEED_ROLLOUT", "DemoRelease", "write_manifests"]

#: The seed's example release: its manifest, prompts and schemas.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_SEED = "research-agent.manifest.yaml"
_SEED_VERSION = "version: 2026.04.19-a3f2c1"
_SEED_MODEL = "primary: claude-sonnet-4-6"

#: The seed manifest's rollout section, embedded so simulations need no files.
SEED_ROLLOUT: dict[str, Any] = {
    "strategy": "canary",
    "stages": [
        {"traffic": 1, "duration": "30m"},
        {"traffic": 10, "duration": "2h"},
        {"traffic": 50, "duration": "6h"},
        {"traffic": 100},
    ],
    "guardrails": {
        "task_success_rate": {"min": 0.97},
        "p95_latency_ms": {"max": 8000},
        "token_spend_delta": {"max": 0.15},
        "eval_score": {"min": 0.90},
    },
    "auto_rollback_on_failure": True,
}


@dataclass(frozen=True, slots=True)
class DemoRelease:
    version: str
    story: str
    #: How its tasks differ from the base release's (None: they do not).
    regression: Regression | None = None
    model: str | None = None


DEMO_RELEASES = (
    DemoRelease("2026.11.16-base", "the release serving today"),
    DemoRelease("2026.11.23-prompt", "a prompt refactor that changes nothing measurable"),
    DemoRelease(
        "2026.11.24-model",
        "a 'minor' model upgrade: 2.5 points more failed tasks and a slower tail",
        Regression(success_drop=0.025, tail_share=0.05, tail_factor=2.0),
        model="claude-sonnet-4-7",
    ),
)


def write_manifests(folder: Path) -> dict[str, Path]:
    """Write each demo release's manifest (with the seed's files) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("prompts", "schemas"):
        shutil.copytree(EXAMPLES / part, folder / part, dirs_exist_ok=True)
    seed = (EXAMPLES / _SEED).read_text()
    if _SEED_VERSION not in seed or _SEED_MODEL not in seed:
        raise RuntimeError(f"{EXAMPLES / _SEED} no longer has the version and model the demo edits")
    paths = {}
    for release in DEMO_RELEASES:
        text = seed.replace(_SEED_VERSION, f"version: {release.version}")
        if release.model is not None:
            text = text.replace(_SEED_MODEL, f"primary: {release.model}")
        path = folder / f"research-agent-{release.version}.manifest.yaml"
        path.write_text(text)
        paths[release.version] = path
    return paths
