"""The release manifest: one immutable artifact pinning prompts, tools, model, memory and config.

Load and validate (`load_manifest`), hash and verify the referenced files against a
lock (`write_lock`, `verify`), diff two releases (`diff_manifests`), check a memory
migration is additive (`check_migration_file`), and find the rollback target
(`previous_release`). Every problem is a `ManifestError` naming the YAML path and line.
"""

from ._diff import ManifestChange, ManifestDiff, RecommendedPlan, diff_manifests
from ._hashes import VerifyReport, content_hashes, lock_path, verify, write_lock
from ._history import PreviousRelease, previous_from_git, previous_release, register_manifest
from ._load import Manifest, load_manifest, parse_manifest
from ._migrations import (
    DEFAULT_DIALECT,
    MigrationReport,
    StatementCheck,
    check_migration,
    check_migration_file,
)
from ._model import AgentRelease, model_pin_problem

__all__ = [
    "DEFAULT_DIALECT",
    "AgentRelease",
    "Manifest",
    "ManifestChange",
    "ManifestDiff",
    "MigrationReport",
    "PreviousRelease",
    "RecommendedPlan",
    "StatementCheck",
    "VerifyReport",
    "check_migration",
    "check_migration_file",
    "content_hashes",
    "diff_manifests",
    "load_manifest",
    "lock_path",
    "model_pin_problem",
    "parse_manifest",
    "previous_from_git",
    "previous_release",
    "register_manifest",
    "verify",
    "write_lock",
]
