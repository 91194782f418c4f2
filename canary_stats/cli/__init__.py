"""The ``canary-stats`` command line (typer); each module registers its commands."""

from . import _analyze, _ingest, _manifest, _report, _rollout, _serve  # noqa: F401  (registers the commands)
from ._app import EXIT_BAD_INPUT, EXIT_CODES, EXIT_SOURCE, app

__all__ = ["EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_SOURCE", "app"]
