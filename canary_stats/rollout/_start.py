"""Starting (or resuming) a rollout: options checked, manifest registered, stable pinned.

What a rollout is compared with and rolls back to is fixed when it starts and
written into its ``started`` transition, so a restart (even with other options)
judges against the same stable release and re-applies the same manifest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..errors import InputError
from ..manifest import Manifest, previous_release, register_manifest
from ..store import Store
from ._state import ReleaseLocked, rollout_id

__all__ = ["check_options", "pin_rollout"]


def check_options(
    *, interval: Any, on_judge_error: Any, max_judge_errors: Any, drain_timeout: Any
) -> None:
    """Refuse executor options that cannot work, naming the option."""
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise InputError("interval", f"expected a positive duration; got {interval!r}")
    if on_judge_error not in ("hold", "pause", "rollback"):
        raise InputError(
            "on_judge_error", f"expected hold, pause or rollback; got {on_judge_error!r}"
        )
    if isinstance(max_judge_errors, bool) or not (
        isinstance(max_judge_errors, int) and max_judge_errors >= 1
    ):
        raise InputError("max_judge_errors", f"expected an integer >= 1; got {max_judge_errors!r}")
    if not (isinstance(drain_timeout, int | float) and drain_timeout >= 0):
        raise InputError("drain_timeout", f"expected seconds >= 0; got {drain_timeout!r}")


def pin_rollout(store: Store, manifest: Manifest, *, stable_version: str | None) -> dict[str, Any]:
    """Register the manifest, refuse a locked version, and pin the rollout's parameters.

    A rollout already started keeps its pinned parameters (a different
    ``stable_version`` is refused). Otherwise the stable release is
    ``stable_version`` or the store's latest stable release of the name, and the
    rollback target is that release's manifest (from the store, else git history).
    A ``stable_version`` found in neither is refused: the rollout would compare
    with, and roll back to, a release nobody can deploy.
    """
    release = manifest.release
    name, version = release.metadata.name, release.metadata.version
    register_manifest(store, manifest)
    own = {r.version: r for r in store.releases(name)}
    record = own[version]
    if record.status == "rolled_back":
        raise ReleaseLocked(
            "metadata.version",
            f"{name} {version} was rolled back at {record.status_at}; a rolled-back "
            "release is locked: fix it and release it under a new version",
        )
    rid = rollout_id(name, version)
    log = store.transitions(rid)
    if log:
        pinned: dict[str, Any] = log[0].detail
        if stable_version is not None and stable_version != pinned["stable"]:
            raise InputError(
                "stable_version",
                f"rollout {rid} started against stable {pinned['stable']}; got {stable_version}",
            )
        return pinned
    if record.status == "stable":
        raise InputError("metadata.version", f"{name} {version} is already the stable release")
    stable = stable_version
    if stable is None:
        found = store.previous_stable(name, before=version)
        if found is None:
            raise InputError(
                "stable_version",
                f"no stable release of {name} in {store.path}; give the version serving "
                "now (--stable-version) or register and promote one",
            )
        stable = found.version
    if stable == version:
        raise InputError("stable_version", f"the canary {stable} cannot be its own stable")
    previous: dict[str, Any] | None = None
    if stable in own:
        previous = {"version": stable, "source": "store", "manifest": own[stable].manifest}
    else:
        target = previous_release(manifest, store=store)
        if target is not None and target.version == stable:
            previous = {
                "version": stable,
                "source": target.source,
                "manifest": target.manifest_text,
            }
    if previous is None:
        known = ", ".join(v for v in own if v != version) or "none"
        raise InputError(
            "stable_version",
            f"--stable-version {stable} is not a release of {name} registered in the store "
            f"{store.path} (registered: {known}) nor in the manifest's git history; register "
            "the release serving now (canary-stats manifest register MANIFEST --stable) or "
            "give one of those",
        )
    policy = release.policy()
    return {
        "name": name,
        "version": version,
        "stable": stable,
        "manifest_sha256": manifest.sha256,
        "stages": [s.traffic for s in policy.stages],
        "auto_rollback_on_failure": policy.auto_rollback_on_failure,
        "previous": previous,
    }
