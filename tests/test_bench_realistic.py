"""Smoke test: the realistic-workload benchmark runs in its quick configuration."""

from __future__ import annotations

from pathlib import Path

from bench import realistic


def test_quick_run_renders_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written text\n")
    assert realistic.main(["--quick", "--output", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written text\n")
    block = text.split(realistic.BEGIN, 1)[1]
    assert realistic.END in block
    for heading in ("### Classes and plans", "### Targets", "#### seed / current",
                    "#### relative / current", "### Where the plan is infeasible"):  # fmt: skip
        assert heading in block, heading
    # low-traffic cannot reach stage 0's minimum: check-plan says so and the judge holds.
    assert "| relative | low-traffic | **no** |" in block
    assert "stalled at stage 0" in block and "too little data" in block
