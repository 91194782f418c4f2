"""The demo: simulated agent traffic, the sticky router, the executor and the judge, end to end."""

from ._releases import DEMO_RELEASES, SEED_ROLLOUT, DemoRelease, write_manifests
from ._story import DEMO_DB, DemoOutcome, run_demo

__all__ = [
    "DEMO_DB",
    "DEMO_RELEASES",
    "SEED_ROLLOUT",
    "DemoOutcome",
    "DemoRelease",
    "run_demo",
    "write_manifests",
]
