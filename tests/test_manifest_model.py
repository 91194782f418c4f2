"""The release manifest: parsing with lines, the schema and its rules, referenced files."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

import canary_stats as cs
from canary_stats.errors import ManifestError
from canary_stats.manifest._load import load_manifest, parse_manifest
from canary_stats.manifest._model import RateLimit, model_pin_problem

from .conftest import SEED_MANIFEST

SEED = SEED_MANIFEST.read_text(encoding="utf-8")
HERE = Path("agent.manifest.yaml")

# A shorter release (one tool, two models) in flow style, one component per line.
COMPACT = (Path(__file__).parent / "data" / "compact.manifest.yaml").read_text(encoding="utf-8")

# COMPACT in block style: one key per line, so nested errors have distinct lines.
BLOCK = """\
apiVersion: agents/v1
kind: AgentRelease
metadata:
  name: research-agent
  version: 2026.04.19-a3f2c1
spec:
  prompts:
    system: prompts/system.md
    task_templates: prompts/tasks/
    few_shot_examples: prompts/examples/
  tools:
    - name: web_search
      version: 1.4.0
      schema: schemas/web_search.json
  model:
    primary: claude-sonnet-4-6
    fallback: gpt-4-turbo-2024-04-09
  memory:
    schema_version: 7
    migration_from: 6
  config:
    rate_limits:
      web_search: "20/60s"
    max_tokens_per_task: 100000
  rollout:
    strategy: canary
    stages:
      - traffic: 1
        duration: 30m
      - {traffic: 10, duration: 2h}
      - {traffic: 50, duration: 6h}
      - {traffic: 100}
    guardrails:
      task_success_rate: {min: 0.97}
      p95_latency_ms: {max: 8000}
      token_spend_delta: {max: 0.15}
      eval_score: {min: 0.90}
    auto_rollback_on_failure: true
"""


def edited(old: str, new: str, text: str = COMPACT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def expect(text: str, field: str, message: str, line: int | None) -> None:
    where = f" (line {line})" if line is not None else ""
    full = f"{field}: {message}{where}"
    with pytest.raises(ManifestError, match=f"^{re.escape(full)}$") as info:
        parse_manifest(text, path=HERE)
    assert (info.value.field, info.value.line) == (field, line)


# -- the seed ------------------------------------------------------------------


def test_seed_manifest_loads_as_written() -> None:
    m = load_manifest(SEED_MANIFEST)
    r = m.release
    assert (r.api_version, r.kind) == ("agents/v1", "AgentRelease")
    assert (r.metadata.name, r.metadata.version) == ("research-agent", "2026.04.19-a3f2c1")
    assert r.metadata.image == "ghcr.io/acme/research-agent:2026.04.19-a3f2c1"
    assert r.spec.model.roles() == {
        "primary": "claude-sonnet-4-6",
        "fallback": "gpt-4-turbo-2024-04-09",
        "local": "meta-llama-3-70b-instruct:2026-02-01",
    }
    assert [(t.name, t.version, t.schema_path) for t in r.spec.tools] == [
        ("web_search", "1.4.0", "schemas/web_search.json"),
        ("send_email", "2.1.0", "schemas/send_email.json"),
    ]
    assert (r.spec.memory.schema_version, r.spec.memory.migration_from) == (7, 6)
    config = r.spec.config
    assert config.max_tokens_per_task == 100_000
    assert config.rate_limits == {
        "web_search": RateLimit(count=20, window=timedelta(seconds=60)),
        "send_email": RateLimit(count=5, window=timedelta(seconds=300)),
    }
    assert str(config.rate_limits["web_search"]) == "20/60s"
    assert config.model_extra == {"provider_routing": "priority_failover"}
    assert [(ref.loc, ref.path, ref.is_dir) for ref in r.references()] == [
        (("spec", "prompts", "system"), "prompts/system.md", False),
        (("spec", "prompts", "task_templates"), "prompts/tasks/", True),
        (("spec", "prompts", "few_shot_examples"), "prompts/examples/", True),
        (("spec", "tools", 0, "schema"), "schemas/web_search.json", False),
        (("spec", "tools", 1, "schema"), "schemas/send_email.json", False),
    ]
    digest = hashlib.sha256(SEED_MANIFEST.read_bytes()).hexdigest()
    assert (m.sha256, m.text, m.path) == (f"sha256:{digest}", SEED, SEED_MANIFEST)
    assert r.policy() == cs.Policy.from_manifest(SEED_MANIFEST)


#: The user's manifest as they printed it; CI has the shared folder beside the clone.
SHARED_SEED = SEED_MANIFEST.parents[2] / "shared" / "reference" / "seed-manifest.yaml"


@pytest.mark.skipif(not SHARED_SEED.is_file(), reason="no shared reference beside the clone")
def test_the_example_is_the_users_seed_byte_for_byte() -> None:
    assert SEED_MANIFEST.read_bytes() == SHARED_SEED.read_bytes()


def test_the_seed_loads_from_its_own_folder(tmp_path: Path) -> None:
    # The seed's bytes (comments included) with only the files it references.
    for name in ("prompts", "schemas"):
        shutil.copytree(SEED_MANIFEST.parent / name, tmp_path / name)
    copy = tmp_path / "agent.manifest.yaml"
    copy.write_bytes(SEED_MANIFEST.read_bytes())
    m = load_manifest(copy)
    assert m.release == load_manifest(SEED_MANIFEST).release
    assert "# Agent manifest" in m.text and "# date + short git sha" in m.text


def test_block_style_is_the_same_release() -> None:
    assert parse_manifest(BLOCK, path=HERE).release == parse_manifest(COMPACT, path=HERE).release


def test_parse_manifest_does_not_touch_files(tmp_path: Path) -> None:
    m = parse_manifest(COMPACT, path=tmp_path / "gone" / "a.yaml")
    assert m.sha256 == f"sha256:{hashlib.sha256(COMPACT.encode()).hexdigest()}"
    assert m.directory == tmp_path / "gone"


def test_an_unreadable_manifest_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ManifestError, match="cannot read the manifest: No such file") as info:
        load_manifest(missing)
    assert (info.value.field, info.value.line) == (str(missing), None)


# -- YAML ------------------------------------------------------------------------

MODEL_LINE = "  model: {primary: claude-sonnet-4-6, fallback: gpt-4-turbo-2024-04-09}\n"


@pytest.mark.parametrize(
    ("text", "field", "message", "line"),
    [
        (
            edited(MODEL_LINE, MODEL_LINE.replace("}", "")),
            "agent.manifest.yaml",
            "not valid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping)",
            8,
        ),
        (
            edited("  memory:", "\tmemory:"),
            "agent.manifest.yaml",
            "not valid YAML: found character '\\t' that cannot start any token "
            "(while scanning for the next token)",
            8,
        ),
        (
            COMPACT + "---\nkind: AgentRelease\n",
            "agent.manifest.yaml",
            "not valid YAML: expected a single document in the stream, but found another document",
            19,
        ),
        (
            edited("kind: AgentRelease", "kind: !!python/object/apply:os.system [ls]"),
            "kind",
            "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'",
            2,
        ),
        (
            edited("    fallback: gpt", "    primary: gpt-4o\n    fallback: gpt", BLOCK),
            "spec.model.primary",
            "duplicate key 'primary' (first at line 16)",
            17,
        ),
        ("", "agent.manifest.yaml", "the file is empty: expected a YAML mapping", 1),
        (
            "- apiVersion: agents/v1\n",
            "agent.manifest.yaml",
            "expected a mapping with apiVersion, kind, metadata and spec at the top level",
            1,
        ),
    ],
    ids=["unclosed", "tab", "two-documents", "python-tag", "duplicate", "empty", "list"],
)
def test_malformed_yaml_names_the_line(text: str, field: str, message: str, line: int) -> None:
    expect(text, field, message, line)


def test_anchors_and_merge_keys_are_plain_yaml() -> None:
    first = "    stages:\n      - traffic: 1\n        duration: 30m\n"
    text = edited(first, "    stages:\n      - &first {traffic: 1, duration: 30m}\n", BLOCK)
    text = edited("      - {traffic: 10, duration: 2h}", "      - {<<: *first, traffic: 10}", text)
    stages = parse_manifest(text, path=HERE).release.policy().stages
    assert [(s.traffic, s.duration) for s in stages[:2]] == [
        (1, timedelta(minutes=30)),
        (10, timedelta(minutes=30)),
    ]


# -- types and unknown keys ----------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "message", "line"),
    [
        ("apiVersion: agents/v1", "apiVersion: agents/v2", "apiVersion",
         "Input should be 'agents/v1'; got 'agents/v2'", 1),
        ("kind: AgentRelease", "kind: Release", "kind",
         "Input should be 'AgentRelease'; got 'Release'", 2),
        ("    schema_version: 7", "    schema_version: '7'", "spec.memory.schema_version",
         "Input should be a valid integer; got '7'", 19),
        ("    max_tokens_per_task: 100000", "    max_tokens_per_task: 0",
         "spec.config.max_tokens_per_task", "Input should be greater than 0; got 0", 24),
        ("  version: 2026.04.19-a3f2c1", "  version: 2026.04", "metadata.version",
         "Input should be a valid string; got 2026.04", 5),
        ("  name: research-agent", "  name: Research Agent", "metadata.name",
         "expected a name such as research-agent; got 'Research Agent'", 4),
        ("    primary: claude-sonnet-4-6\n", "", "spec.model.primary",
         "required key 'primary' is missing", 15),
        ("  tools:\n    - name: web_search", "  tools:\n    web_search:\n    - name: web_search",
         "spec.tools", "Input should be a valid tuple", 11),
    ],
)  # fmt: skip
def test_wrong_types_name_path_and_line(
    old: str, new: str, field: str, message: str, line: int
) -> None:
    expect(edited(old, new, BLOCK), field, message, line)


@pytest.mark.parametrize(
    ("old", "new", "field", "message", "line"),
    [
        ("kind: AgentRelease\n", "kind: AgentRelease\nstatus: ready\n", "status",
         "unknown key 'status'; expected one of: apiVersion, kind, metadata, spec", 3),
        ("  model:\n", "  modle: {}\n  model:\n", "spec.modle",
         "unknown key 'modle'; expected one of: prompts, tools, model, memory, config, rollout",
         15),
        ("    few_shot_examples: prompts/examples/\n",
         "    few_shot_examples: prompts/examples/\n    tools: prompts/tools.md\n",
         "spec.prompts.tools",
         "unknown key 'tools'; expected one of: system, task_templates, few_shot_examples", 11),
        ("      schema: schemas/web_search.json\n",
         "      schema: schemas/web_search.json\n      timeout: 30s\n", "spec.tools.0.timeout",
         "unknown key 'timeout'; expected one of: name, version, schema", 15),
        ("  version: 2026.04.19-a3f2c1\n",
         "  version: 2026.04.19-a3f2c1\n  imgae: ghcr.io/acme/a:1\n", "metadata.imgae",
         "unknown key 'imgae'; expected one of: name, version, image", 6),
        ("  memory:\n", "  memory:\n    schema: 7\n", "spec.memory.schema",
         "unknown key 'schema'; expected one of: schema_version, migration_from", 19),
        ("        duration: 30m\n", "        duraton: 30m\n", "spec.rollout.stages.0.duraton",
         "unknown key 'duraton'; expected one of: traffic, duration, mode", 29),
        ("    strategy: canary\n", "    strategy: canary\n    speed: fast\n",
         "spec.rollout.speed", "unknown key 'speed'; expected one of: guardrails, stages, alpha, "
         "alpha_promote, min_samples, tuning_samples, srm_alpha, strategy, "
         "auto_rollback_on_failure, on_silent_canary, max_tokens_per_task, user_history", 27),
    ],
    ids=["top", "spec", "prompts", "tool", "metadata", "memory", "stage", "rollout"],
)  # fmt: skip
def test_unknown_keys_are_refused(old: str, new: str, field: str, message: str, line: int) -> None:
    expect(edited(old, new, BLOCK), field, message, line)


# -- model pins ------------------------------------------------------------------------

FAMILY = (
    "names a model family, not a pin: an id must carry a dated snapshot "
    "(-2024-04-09 or -20240409), a version tail (claude-sonnet-4-6) or @version"
)
LATEST = (
    "is a moving alias ('latest' follows the newest model): "
    "pin a dated snapshot such as gpt-4-turbo-2024-04-09"
)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("latest", f"'latest' {LATEST}"),
        ("claude-3-opus-latest", f"'claude-3-opus-latest' {LATEST}"),
        ("gemini-1.5-pro@latest", f"'gemini-1.5-pro@latest' {LATEST}"),
        ("gpt-4", f"'gpt-4' {FAMILY}"),
        ("gpt-4o", f"'gpt-4o' {FAMILY}"),
        ("gpt-4-turbo", f"'gpt-4-turbo' {FAMILY}"),
        ("claude", f"'claude' {FAMILY}"),
        ("claude-sonnet", f"'claude-sonnet' {FAMILY}"),
        ("claude-3-opus", f"'claude-3-opus' {FAMILY}"),
        ("claude-sonnet-4-5", "'claude-sonnet-4-5' is a moving alias: "
         "pin the snapshot 'claude-sonnet-4-5-20250929'"),
        ("anthropic/claude-opus-4.1", "'anthropic/claude-opus-4.1' is a moving alias: "
         "pin the snapshot 'claude-opus-4-1-20250805'"),
        ("gpt-4.1", "'gpt-4.1' is a moving alias: pin the snapshot 'gpt-4.1-2025-04-14'"),
        ("gpt-4-turbo-2024-02-30", "'gpt-4-turbo-2024-02-30' carries a snapshot date "
         "2024-02-30 that is not a calendar day"),
        ("gpt 4", "expected a model id such as claude-sonnet-4-6; got 'gpt 4'"),
    ],
)  # fmt: skip
def test_moving_model_ids_are_refused(model: str, reason: str) -> None:
    assert model_pin_problem(model) == reason
    expect(
        edited("primary: claude-sonnet-4-6", f"primary: {model}"),
        "spec.model.primary",
        reason,
        7,
    )


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-6",
        "gpt-4-turbo-2024-04-09",
        "claude-3-5-sonnet-20241022",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "claude-3-5-sonnet-v2@20241022",
        "claude-opus-4-20250514",
        "gpt-4-0613",
        "gemini-1.5-pro-002",
        "mistral-large-2411",
        "claude-2.1",
    ],
)
def test_exact_pins_are_accepted(model: str) -> None:
    assert model_pin_problem(model) is None
    text = edited("fallback: gpt-4-turbo-2024-04-09", f"fallback: {model}")
    if model == "claude-sonnet-4-6":
        same = "the fallback is the primary model 'claude-sonnet-4-6'"
        expect(text, "spec.model.fallback", same, 7)
    else:
        assert parse_manifest(text, path=HERE).release.spec.model.fallback == model


def test_the_fallback_is_refused_too() -> None:
    expect(
        edited("fallback: gpt-4-turbo-2024-04-09", "fallback: gpt-4o"),
        "spec.model.fallback",
        f"'gpt-4o' {FAMILY}",
        7,
    )


# -- tools -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.4", "expected a semantic version as text such as '1.4.0'; got 1.4"),
        ("'1.4'", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got '1.4'"),
        ("v1.4.0", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; "
         "got 'v1.4.0' (drop the leading 'v')"),
        ("01.4.0", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got '01.4.0'"),
        ("1.4.0.1", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got '1.4.0.1'"),
        ("1.4.0-", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got '1.4.0-'"),
        ("latest", "expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got 'latest'"),
    ],
)  # fmt: skip
def test_tool_versions_are_strict_semver(version: str, message: str) -> None:
    expect(edited("version: 1.4.0", f"version: {version}"), "spec.tools.0.version", message, 6)


@pytest.mark.parametrize("version", ["0.1.0", "1.4.0-rc.1", "2.0.0+build.5", "1.0.0-alpha-1"])
def test_semver_prerelease_and_build_are_accepted(version: str) -> None:
    tools = parse_manifest(edited("version: 1.4.0", f"version: {version}"), path=HERE)
    assert tools.release.spec.tools[0].version == version


def test_tool_names_are_unique() -> None:
    twice = "tools: [{name: web_search, version: 1.4.0, schema: schemas/web_search.json}"
    text = edited(twice, f"{twice}, {{name: web_search, version: 1.5.0, schema: s.json}}")
    expect(text, "spec.tools.1.name", "tool 'web_search' is declared twice", 6)


LOCAL = "local: meta-llama-3-70b-instruct:2026-02-01"


@pytest.mark.parametrize(
    ("role", "model", "reason"),
    [
        ("local", "llama-3-latest", "'llama-3-latest' is a moving alias ('latest' follows the "
         "newest model): pin a dated snapshot such as gpt-4-turbo-2024-04-09"),
        ("local", "meta-llama-3-70b-instruct", f"'meta-llama-3-70b-instruct' {FAMILY}"),
        ("router", "gpt-4o", f"'gpt-4o' {FAMILY}"),
        ("judge", "latest", "'latest' is a moving alias ('latest' follows the newest model): "
         "pin a dated snapshot such as gpt-4-turbo-2024-04-09"),
    ],
)  # fmt: skip
def test_every_model_role_is_pin_checked(role: str, model: str, reason: str) -> None:
    expect(edited(LOCAL, f"{role}: {model}", SEED), f"spec.model.{role}", reason, 26)


def test_model_roles_beyond_primary_and_fallback() -> None:
    text = edited(LOCAL, f"{LOCAL}\n    judge: claude-opus-4-20250514", SEED)
    pins = parse_manifest(text, path=HERE).release.spec.model
    assert list(pins.roles()) == ["primary", "fallback", "local", "judge"]
    assert pins.model_extra == {
        "local": "meta-llama-3-70b-instruct:2026-02-01",
        "judge": "claude-opus-4-20250514",
    }
    expect(
        edited(LOCAL, "Local Model: claude-opus-4-20250514", SEED),
        "spec.model.Local Model",
        "expected a role name such as local or fallback; got 'Local Model'",
        26,
    )
    expect(
        edited(LOCAL, "local: 2026", SEED),
        "spec.model.local",
        "Input should be a valid string; got 2026",
        26,
    )


# -- metadata.image ------------------------------------------------------------------------

IMAGE = "image: ghcr.io/acme/research-agent:2026.04.19-a3f2c1"
EXAMPLE_IMAGE = "such as ghcr.io/acme/research-agent:2026.04.19-a3f2c1"


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/research-agent:2026.04.19-a3f2c1",
        "registry.local:5000/agents/research-agent:v42",
        "research-agent:2026.04.19",
        "ghcr.io/acme/research-agent@sha256:" + "a" * 64,
        "ghcr.io/acme/research-agent:2026.04.19-a3f2c1@sha256:" + "0f" * 32,
    ],
)
def test_pinned_images_are_accepted(image: str) -> None:
    text = edited(IMAGE, f"image: {image}", SEED)
    assert parse_manifest(text, path=HERE).release.metadata.image == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("ghcr.io/acme/research-agent:latest", "'ghcr.io/acme/research-agent:latest' is a "
         f"moving tag: pin the release's own tag, {EXAMPLE_IMAGE}"),
        ("ghcr.io/acme/research-agent", "'ghcr.io/acme/research-agent' has no tag (that means "
         f"'latest'): pin one, {EXAMPLE_IMAGE}"),
        ("Acme/Agent:1", f"expected an image reference {EXAMPLE_IMAGE}; got 'Acme/Agent:1'"),
        ("'ghcr.io/acme/agent:'", f"expected an image reference {EXAMPLE_IMAGE}; "
         "got 'ghcr.io/acme/agent:'"),
        ("ghcr.io/acme/agent@sha256:xyz", f"expected an image reference {EXAMPLE_IMAGE}; "
         "got 'ghcr.io/acme/agent@sha256:xyz'"),
        ("'ghcr.io/acme/agent:1 2'", f"expected an image reference {EXAMPLE_IMAGE}; "
         "got 'ghcr.io/acme/agent:1 2'"),
        ("42", "Input should be a valid string; got 42"),
    ],
)  # fmt: skip
def test_moving_or_malformed_images_are_refused(image: str, message: str) -> None:
    expect(edited(IMAGE, f"image: {image}", SEED), "metadata.image", message, 7)


# -- config ---------------------------------------------------------------------------------

CONFIG = '  config: {rate_limits: {web_search: "20/60s"}, max_tokens_per_task: 100000}'


def config(body: str) -> str:
    return edited(CONFIG, f"  config: {{{body}}}")


def test_every_config_knob() -> None:
    text = config(
        'rate_limits: {web_search: "20/s", model: "600/1h"}, max_tokens_per_task: 50000, '
        "max_steps_per_task: 40, task_timeout: 10m, tool_timeout: 30s, max_retries: 2, "
        "temperature: 0.2, flags: {deep_research: true, search_region: eu, max_pages: 3}"
    )
    c = parse_manifest(text, path=HERE).release.spec.config
    assert {k: str(v) for k, v in c.rate_limits.items()} == {
        "web_search": "20/1s",
        "model": "600/3600s",
    }
    assert (c.max_steps_per_task, c.task_timeout, c.tool_timeout) == (
        40,
        timedelta(minutes=10),
        timedelta(seconds=30),
    )
    assert (c.max_retries, c.temperature) == (2, 0.2)
    assert c.flags == {"deep_research": True, "search_region": "eu", "max_pages": 3}


def test_config_keeps_the_runtimes_own_keys() -> None:
    text = config(
        'rate_limits: {web_search: "20/60s"}, max_tokens_per_task: 100000, '
        "provider_routing: priority_failover, cache: {ttl: 10m, size: 512}"
    )
    c = parse_manifest(text, path=HERE).release.spec.config
    assert c.model_extra == {
        "provider_routing": "priority_failover",
        "cache": {"ttl": "10m", "size": 512},
    }
    assert c.max_tokens_per_task == 100_000  # the keys canary_stats knows are still checked
    expect(
        config("max_tokens_per_task: -5, provider_routing: priority_failover"),
        "spec.config.max_tokens_per_task",
        "Input should be greater than 0; got -5",
        9,
    )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('rate_limits: {web_search: "20 per minute"}', "spec.config.rate_limits.web_search",
         "expected a rate limit such as '20/60s' (calls/window); got '20 per minute'"),
        ('rate_limits: {web_search: "20/60x"}', "spec.config.rate_limits.web_search",
         "'20/60x' has no valid window (such as 60s, 1m or 1h)"),
        ('rate_limits: {web_search: "0/60s"}', "spec.config.rate_limits.web_search",
         "expected a rate limit such as '20/60s' (calls/window); got '0/60s'"),
        ("rate_limits: {web_search: 20}", "spec.config.rate_limits.web_search",
         "expected a rate limit such as '20/60s' (calls/window); got 20"),
        ('rate_limits: {web_serch: "20/60s"}', "spec.config.rate_limits.web_serch",
         "'web_serch' is neither a declared tool (web_search) nor 'model'"),
        ("task_timeout: soon", "spec.config.task_timeout",
         "expected a duration such as '30m', '2h' or '1h30m'; got 'soon'"),
        ("task_timeout: 0m", "spec.config.task_timeout",
         "expected a positive duration; got '0m'"),
        ("task_timeout: 1m, tool_timeout: 2m", "spec.config.tool_timeout",
         "a tool call (0:02:00) cannot outlast its task (0:01:00)"),
        ("temperature: 3", "spec.config.temperature",
         "Input should be less than or equal to 2; got 3"),
        ("flags: {regions: [eu, us]}", "spec.config.flags.regions",
         "a flag is text, a number or true/false; got ['eu', 'us']"),
    ],
)  # fmt: skip
def test_config_values_are_checked(body: str, field: str, message: str) -> None:
    expect(config(f"max_tokens_per_task: 100000, {body}"), field, message, 9)


# -- memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory", "field", "message"),
    [
        ("{schema_version: 7, migration_from: 5}", "spec.memory.migration_from",
         "must be schema_version - 1 = 6 (one step per release); got 5"),
        ("{schema_version: 7, migration_from: 7}", "spec.memory.migration_from",
         "must be schema_version - 1 = 6 (one step per release); got 7"),
        ("{schema_version: 0}", "spec.memory.schema_version",
         "Input should be greater than or equal to 1; got 0"),
    ],
)  # fmt: skip
def test_memory_migrates_one_step(memory: str, field: str, message: str) -> None:
    text = edited("memory: {schema_version: 7, migration_from: 6}", f"memory: {memory}")
    expect(text, field, message, 8)


def test_memory_without_a_migration() -> None:
    text = edited("memory: {schema_version: 7, migration_from: 6}", "memory: {schema_version: 1}")
    assert parse_manifest(text, path=HERE).release.spec.memory.migration_from is None


# -- rollout ---------------------------------------------------------------------------------

STAGES = (
    "stages: [{traffic: 1, duration: 30m}, {traffic: 10, duration: 2h}, "
    "{traffic: 50, duration: 6h}, {traffic: 100}]"
)


@pytest.mark.parametrize(
    ("stages", "field", "message"),
    [
        ("[{traffic: 1, duration: 30m}, {traffic: 50}, {traffic: 10}, {traffic: 100}]",
         "spec.rollout.stages.2.traffic",
         "stage 2 sends 10% after 50%: traffic must rise strictly"),
        ("[{traffic: 10, duration: 2h}, {traffic: 10}, {traffic: 100}]",
         "spec.rollout.stages.1.traffic",
         "stage 1 sends 10% after 10%: traffic must rise strictly"),
        ("[{traffic: 1, duration: 30m}, {traffic: 50, duration: 6h}]",
         "spec.rollout.stages.1.traffic",
         "the last stage must send 100% of traffic to the canary; got 50%"),
        ("[{traffic: 1, duration: 30x}, {traffic: 100}]", "spec.rollout.stages.0.duration",
         "expected a duration such as '30m', '2h' or '1h30m'; got '30x'"),
        ("[{traffic: 0, duration: 30m}, {traffic: 100}]", "spec.rollout.stages.0.traffic",
         "Input should be greater than 0"),
        ("[]", "spec.rollout.stages", "Tuple should have at least 1 item after validation, not 0"),
    ],
)  # fmt: skip
def test_stages_rise_to_100(stages: str, field: str, message: str) -> None:
    expect(edited(STAGES, f"stages: {stages}"), field, message, 12)


@pytest.mark.parametrize(
    ("old", "new", "field", "message", "line"),
    [
        ("task_success_rate: {min: 0.97}", "task_success_rate: {min: 97}",
         "spec.rollout.guardrails.task_success_rate",
         "min of a rate or score must be in (0, 1); got 97.0", 14),
        ("eval_score: {min: 0.90}", "eval_score: {min: high}",
         "spec.rollout.guardrails.eval_score.value",
         "Input should be a valid number, unable to parse string as a number", 17),
        ("p95_latency_ms: {max: 8000}", "latency_p95: {max: 8000}", "spec.rollout.guardrails",
         "unknown guardrail 'latency_p95'; expected task_success_rate, pNN_latency_ms, "
         "token_spend_delta, tokens_per_task or eval_score", 13),
        ("strategy: canary", "strategy: blue-green", "spec.rollout.strategy",
         "Input should be 'canary'", 11),
    ],
)  # fmt: skip
def test_guardrail_errors_are_placed(
    old: str, new: str, field: str, message: str, line: int
) -> None:
    expect(edited(old, new), field, message, line)


def test_explicit_guardrails_are_placed_at_their_item() -> None:
    short = "\n".join(line for line in COMPACT.splitlines() if line.startswith("      "))
    text = edited(
        short,
        "      - {metric: task_success_rate, max_drop: 0.02}\n"
        "      - {metric: p95_latency_ms, max_ratio: -1.2}",
    )
    expect(text, "spec.rollout.guardrails.p95_latency_ms", "max_ratio must be > 0; got -1.2", 15)


# -- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "message"),
    [
        ("../system.md", "'../system.md' is not a path inside the manifest's directory"),
        ("/etc/passwd", "'/etc/passwd' is not a path inside the manifest's directory"),
        ("./", "'./' is not a path inside the manifest's directory"),
        ("prompts\\\\system.md", "expected a relative path using '/' (a/b.md); "
         "got 'prompts\\\\system.md'"),
        ("prompts/", "expected a file, not a directory; got 'prompts/'"),
    ],
)  # fmt: skip
def test_paths_stay_inside_the_release(system: str, message: str) -> None:
    text = edited("system: prompts/system.md", f'system: "{system}"')
    expect(text, "spec.prompts.system", message, 5)
