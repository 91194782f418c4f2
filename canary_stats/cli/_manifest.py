"""``canary-stats manifest validate|hash|verify|diff|check-migration|check-plan|register|previous``.

Exit 0 when fine, 2 with a message otherwise (an invalid manifest, tampering, a
destructive migration, no rollback target). ``check-plan`` exits 1 for a plan that
is not feasible at the traffic given. ``--format json`` prints one JSON document on
stdout in every case, errors included, for machines.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CanaryStatsError, InputError, ManifestError
from ..store import DEFAULT_PATH, Store
from ._app import EXIT_BAD_INPUT, app, existing_store, fail

__all__ = ["manifest_app"]

manifest_app = typer.Typer(
    help="Check, hash, verify and diff release manifests; check memory migrations.",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")


class Format(StrEnum):
    text = "text"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="text or json.")]
ManifestArg = Annotated[Path, typer.Argument(help="The release manifest (YAML).")]


def _emit(fmt: Format, doc: dict[str, Any], lines: list[str], *, ok: bool = True) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps({"ok": ok, **doc}, indent=2, sort_keys=True, default=str))
    else:
        for line in lines:
            typer.echo(line)
    if not ok:
        raise typer.Exit(EXIT_BAD_INPUT)


def _error(fmt: Format, exc: CanaryStatsError) -> typer.Exit:
    if fmt is not Format.json:
        return fail(exc)
    error: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, InputError):
        error["field"] = exc.field
    if isinstance(exc, ManifestError):
        error["line"] = exc.line
    typer.echo(json.dumps({"ok": False, "error": error}, indent=2, sort_keys=True))
    return typer.Exit(EXIT_BAD_INPUT if isinstance(exc, InputError) else 1)


@manifest_app.command()
def validate(manifest: ManifestArg, format: FormatOption = Format.text) -> None:
    """Load and check a manifest: schema, exact model pins, semver, files, rollout plan."""
    from ..manifest import load_manifest

    try:
        m = load_manifest(manifest)
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    r = m.release
    stages = " → ".join(f"{s.traffic:g}%" for s in r.policy().stages)
    _emit(
        format,
        {"name": r.metadata.name, "version": r.metadata.version, "sha256": m.sha256},
        [
            f"{manifest}: valid — {r.metadata.name} {r.metadata.version}",
            f"  model {r.spec.model.primary}" + _other_roles(r.spec.model.roles()),
            f"  tools {', '.join(f'{t.name} {t.version}' for t in r.spec.tools) or 'none'}",
            f"  memory schema {r.spec.memory.schema_version}; rollout {stages}",
        ],
    )


def _other_roles(roles: dict[str, str]) -> str:
    others = [f"{role} {model}" for role, model in roles.items() if role != "primary"]
    return f" ({', '.join(others)})" if others else ""


@manifest_app.command("hash")
def hash_(manifest: ManifestArg, format: FormatOption = Format.text) -> None:
    """Hash every prompt, template and schema file and write the lock beside the manifest."""
    from ..manifest import content_hashes, load_manifest, write_lock

    try:
        m = load_manifest(manifest)
        lock = write_lock(m)
        hashes = content_hashes(m)
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    _emit(
        format,
        {"lock": str(lock), "manifest_sha256": m.sha256, "files": hashes},
        [f"wrote {lock} ({len(hashes)} files)", *(f"  {h}  {f}" for f, h in hashes.items())],
    )


@manifest_app.command()
def verify(manifest: ManifestArg, format: FormatOption = Format.text) -> None:
    """Compare the files with the lock; an undeclared change (e.g. a prompt) is tampering."""
    from ..manifest import load_manifest
    from ..manifest import verify as verify_lock

    try:
        report = verify_lock(load_manifest(manifest))
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    doc = {
        "changed": list(report.changed),
        "missing": list(report.missing),
        "added": list(report.added),
        "manifest_changed": report.manifest_changed,
    }
    lines = [f"{manifest}: every file matches its lock"] if report.ok else report.messages()
    _emit(format, doc, lines, ok=report.ok)


@manifest_app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The manifest now deployed.")],
    new: Annotated[Path, typer.Argument(help="The manifest to roll out.")],
    format: FormatOption = Format.text,
) -> None:
    """Component-by-component diff with a risk class and a recommended rollout plan."""
    from ..manifest import diff_manifests, load_manifest

    try:
        result = diff_manifests(load_manifest(old), load_manifest(new))
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    _emit(format, result.to_dict(), result.summary_lines())


@manifest_app.command("check-migration")
def check_migration(
    sql: Annotated[Path, typer.Argument(help="The memory migration (.sql).")],
    manifest: Annotated[
        Path | None, typer.Option(help="Take the version bump from this manifest's spec.memory.")
    ] = None,
    format: FormatOption = Format.text,
) -> None:
    """Refuse a migration that is not additive (DROP, RENAME, type changes, NOT NULL)."""
    from ..manifest import check_migration_file, load_manifest

    try:
        m = load_manifest(manifest) if manifest is not None else None
        report = check_migration_file(sql, manifest=m)
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    _emit(format, report.to_dict(), [f"{sql}:", *report.summary_lines()], ok=report.ok)


#: check_plan's arguments, as the command's options name them.
_PLAN_OPTIONS = {
    "tasks_per_min": "--tasks-per-min",
    "eval_share": "--eval-share",
    "users": "--users",
}


@manifest_app.command("check-plan")
def check_plan(
    manifest: ManifestArg,
    tasks_per_min: Annotated[
        float, typer.Option("--tasks-per-min", help="Agent tasks per minute, both cohorts.")
    ],
    eval_share: Annotated[
        float, typer.Option("--eval-share", help="Share of tasks given an eval score, in (0, 1].")
    ] = 1.0,
    users: Annotated[
        int | None,
        typer.Option(help="Users routed (sticky per user): variances grow by the design effect."),
    ] = None,
    assume: Annotated[
        list[str] | None,
        typer.Option(help="A baseline value NAME=VALUE (e.g. success_rate=0.99); repeatable."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    format: FormatOption = Format.text,
) -> None:
    """Will the rollout plan work at this traffic? Data, detection and proof per stage.

    Exit 0 when feasible, 1 when a prove stage cannot prove every guardrail in its
    planned time (the warnings say why), 2 for bad input.
    """
    from .._plan import check_plan as project
    from ..policy import Policy

    fmt = Format.json if json_out else format
    try:
        plan = project(
            Policy.from_manifest(manifest), tasks_per_min=tasks_per_min, eval_share=eval_share,
            users=users, baseline=_baseline(assume or []),
        )  # fmt: skip
    except InputError as exc:
        option = _PLAN_OPTIONS.get(
            exc.field, "--assume" if exc.field.startswith("baseline.") else None
        )
        message = str(exc).removeprefix(f"{exc.field}: ")
        if exc.field.startswith("baseline."):
            message = f"{exc.field.removeprefix('baseline.')} {message}"
        raise _error(fmt, exc if option is None else InputError(option, message)) from None
    except CanaryStatsError as exc:
        raise _error(fmt, exc) from None
    if fmt is Format.json:
        doc = {"ok": plan.feasible, "manifest": str(manifest), **plan.to_dict()}
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        first, *rest = plan.summary_lines()
        typer.echo(f"{manifest}: {first}")
        for line in rest:
            typer.echo(line)
    if not plan.feasible:
        raise typer.Exit(1)


def _baseline(items: list[str]) -> Any:
    """A `Baseline` from ``NAME=VALUE`` items."""
    from dataclasses import fields

    from .._plan import Baseline

    names = [f.name for f in fields(Baseline)]
    values: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if name.strip() not in names or not math.isfinite(number):
            raise InputError(
                "--assume",
                f"expected NAME=VALUE with a number and NAME one of {names}; got {item!r}",
            )
        values[name.strip()] = number
    return Baseline(**values)


@manifest_app.command()
def register(
    manifest: ManifestArg,
    db: Annotated[Path, typer.Option("--db", help="The DuckDB store.")] = DEFAULT_PATH,
    stable: Annotated[
        bool, typer.Option(help="Also mark it the stable release (promoted to 100 %).")
    ] = False,
    create: Annotated[
        bool, typer.Option("--create", help="Create the store when --db does not exist.")
    ] = False,
    format: FormatOption = Format.text,
) -> None:
    """Record a verified release and its hashes in the store's release history."""
    from ..manifest import load_manifest, register_manifest
    from ..manifest import verify as verify_lock

    try:
        m = load_manifest(manifest)
        report = verify_lock(m)
        if not report.ok:
            raise ManifestError(str(manifest), "; ".join(report.messages()))
        meta = m.release.metadata
        with Store(db if create else existing_store(db)) as store:
            new = register_manifest(store, m)
            if stable:
                store.set_release_status(meta.name, meta.version, "stable")
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    what = "registered" if new else "already registered"
    _emit(
        format,
        {"name": meta.name, "version": meta.version, "new": new, "stable": stable},
        [f"{meta.name} {meta.version} {what} in {db}" + (" as stable" if stable else "")],
    )


@manifest_app.command()
def previous(
    manifest: ManifestArg,
    db: Annotated[
        Path | None, typer.Option("--db", help="Look in this store first, then git.")
    ] = None,
    format: FormatOption = Format.text,
) -> None:
    """The rollback target: the previous stable release (store) or committed version (git)."""
    from ..manifest import load_manifest, previous_release

    try:
        m = load_manifest(manifest, check_files=False)
        if db is not None:
            with Store(existing_store(db)) as store:
                found = previous_release(m, store=store)
        else:
            found = previous_release(m)
        if found is None:
            raise ManifestError(
                str(manifest), "no previous release in the store or the file's git history"
            )
    except CanaryStatsError as exc:
        raise _error(format, exc) from None
    _emit(
        format,
        {"name": found.name, "version": found.version, "source": found.source,
         "manifest": found.manifest_text},
        [f"roll back to {found.name} {found.version} (from {found.source})"],
    )  # fmt: skip
