"""Parse YAML into plain Python values plus a map from field path to source line.

PyYAML's libyaml composer is used (not ruamel) because validation runs on every
edit and at 10,000 models ruamel's pure-Python parser takes seconds; we only
need the node tree and its line marks here. Write-back, where comments must
survive, is a separate concern (``control_plane.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from control_plane.policy.errors import FieldPath, PolicyError

try:  # libyaml is the fast path; the pure-Python loader is an equivalent fallback
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_SCALARS = yaml.constructor.SafeConstructor()


@dataclass(slots=True)
class SourceDocument:
    """One YAML document: its data and where each field came from."""

    file: str
    index: int  # position of the document in its file, 0-based
    line: int  # first line of the document, 1-based
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int:
        """Line of the deepest known prefix of ``path`` (errors may point below a node)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def parse_documents(text: str, file: str) -> tuple[list[SourceDocument], list[PolicyError]]:
    """Every non-empty document in ``text``; YAML errors are returned, never raised."""
    docs: list[SourceDocument] = []
    errors: list[PolicyError] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        return [], [PolicyError(file, line, (), f"malformed YAML: {problem}")]
    except yaml.YAMLError as exc:
        return [], [PolicyError(file, 1, (), f"malformed YAML: {exc}")]
    for index, node in enumerate(nodes):
        if node is None:
            continue
        doc = SourceDocument(file=file, index=index, line=node.start_mark.line + 1, data=None)
        doc.data = _to_python(node, (), doc, errors)
        docs.append(doc)
    return docs, errors


def _to_python(node: yaml.Node, path: FieldPath, doc: SourceDocument, errors: list[PolicyError]) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys are taken verbatim: YAML 1.1 would turn `on:` (retries.on) into True.
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(
                    PolicyError(doc.file, key_node.start_mark.line + 1, path, "mapping keys must be strings")
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in out:
                errors.append(PolicyError(doc.file, key_node.start_mark.line + 1, child, "duplicate key"))
                continue
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, child, doc, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), doc, errors) for i, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)
