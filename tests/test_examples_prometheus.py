"""examples/prometheus/ works as written: promtool accepts it and the names match the source."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from canary_stats.sources.prometheus import MetricNames, PrometheusConfig

from .conftest import ROOT

EXAMPLES = ROOT / "examples" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules() -> None:
    rules = _promtool("check", "rules", str(EXAMPLES / "recording-rules.yaml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_scrape_job_sets_the_cohort_label() -> None:
    # Debian's promtool is built without Kubernetes discovery, so the job is read as YAML.
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"version", "rollouts_pod_template_hash"} <= targets
    assert config["rule_files"] == ["recording-rules.yaml"]


def test_the_rules_use_the_source_defaults() -> None:
    text = (EXAMPLES / "recording-rules.yaml").read_text()
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    used = {m for r in rules for m in re.findall(r"\b(agent_[a-z_]+)\b", r["expr"])}
    names = MetricNames()
    expected = {
        names.tasks,
        names.successes,
        f"{names.latency}_bucket",
        f"{names.tokens}_sum",
        f"{names.tokens}_count",
        f"{names.eval_score}_sum",
        f"{names.eval_score}_count",
    }
    assert used == expected
    assert "by (version" in text and PrometheusConfig(url="http://x:9090").cohort_label == "version"
