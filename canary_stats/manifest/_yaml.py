"""YAML with line numbers: plain Python data plus the line of every node.

PyYAML's safe loader composes the node graph (which keeps each node's position),
and this module turns it into dicts, lists and scalars while recording, for
every path, the 1-based line where it stands. A Pydantic error location can
then be reported as ``spec.model.primary (line 7)``.

Only the safe loader's tags are accepted (no ``!!python/...``). Mapping keys
are read as written, always as strings, so ``on:`` or ``200:`` stay names
instead of becoming YAML 1.1 booleans or integers. Duplicate keys are refused:
PyYAML would silently keep the last one, which could hide a second model pin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ManifestError

__all__ = ["Loc", "YamlDocument", "dotted", "load_yaml"]

Loc = tuple[str | int, ...]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# An alias can reuse a subtree many times ("billion laughs"); a manifest is small.
_MAX_NODES = 100_000


def dotted(loc: Sequence[str | int]) -> str:
    """``("spec", "tools", 0, "version")`` -> ``"spec.tools.0.version"``."""
    return ".".join(str(part) for part in loc)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document and the line of each of its nodes.

    ``lines`` maps a path to the 1-based line of its node; an entry of a mapping
    is placed at its key, where a reader looks for it.
    """

    data: Any
    lines: Mapping[Loc, int]

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc``, or of its deepest ancestor present in the document.

        A missing key has no line of its own; its parent mapping is where to add it.
        """
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def load_yaml(text: str, *, source: str) -> YamlDocument:
    """Parse one YAML document; errors name ``source`` (the file) and the line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ManifestError(source, "the file is empty: expected a YAML mapping", line=1)
        builder = _Builder(loader, source)
        data = builder.build(root, ())
        return YamlDocument(data=data, lines=builder.lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "cannot be parsed"
        if exc.context and what.startswith("but "):
            # PyYAML splits some sentences: "expected a single document ...", "but found ..."
            what = f"{exc.context}, {what}"
        elif exc.context:
            what = f"{what} ({exc.context})"
        raise ManifestError(
            source, f"not valid YAML: {what}", line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


class _Builder:
    """Walks the composed node graph into plain data, recording lines."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source
        self._stack: set[int] = set()
        self._count = 0
        self.lines: dict[Loc, int] = {}

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise self._error(loc, node, f"more than {_MAX_NODES} nodes: aliases expanding?")
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._loader.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError:  # a tag outside the safe set
                raise self._error(loc, node, f"unsupported YAML tag {node.tag!r}") from None
            except ValueError as exc:  # e.g. "!!int abc"
                raise self._error(loc, node, f"not a valid scalar: {exc}") from None
        if id(node) in self._stack:
            raise self._error(loc, node, "an alias refers to its own ancestor")
        self._stack.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            raise self._error(loc, node, f"unsupported YAML tag {node.tag!r}")
        finally:
            self._stack.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            key = self._key(key_node, loc)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise ManifestError(
                    dotted((*loc, key)),
                    f"duplicate key {key!r} (first at line {seen[key]})",
                    line=line,
                )
            seen[key] = line
        # Merge keys ("<<: *defaults"): merged entries come first, own keys override.
        self._loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, loc)
            self.lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*loc, key))
        return out

    def _key(self, node: yaml.Node, loc: Loc) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self._error(loc, node, "a mapping key must be a plain name")
        return str(node.value)

    def _error(self, loc: Loc, node: yaml.Node, message: str) -> ManifestError:
        return ManifestError(dotted(loc) or self._source, message, line=node.start_mark.line + 1)
