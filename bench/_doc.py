"""Each benchmark owns one generated block of docs/benchmarks.md, between its markers."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["DOC", "emit", "write_block"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_block(doc: Path, begin: str, end: str, block: str) -> None:
    """Replace the block between ``begin`` and ``end`` (append it when absent)."""
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.write_text(text)


def emit(text: str, output: Path | None, begin: str, end: str) -> None:
    """Print the block (quick runs) or write it into ``output``."""
    if output is None:
        print(text)
    else:
        write_block(output, begin, end, text)
        print(f"wrote {output}", file=sys.stderr)
