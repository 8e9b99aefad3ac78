"""Parse YAML into plain Python values plus a map from field path to source line.

PyYAML's libyaml composer is used (not ruamel) because validation runs on every
edit and at 10,000 models ruamel's pure-Python parser takes seconds; we only
need the node tree and its line marks here. Write-back, where comments must
survive, is a separate concern (``control_plane.store``).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from control_plane.policy.errors import FieldPath, PolicyError

try:  # libyaml is the fast path; the pure-Python loader is an equivalent fallback
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader

_STR_TAG = "tag:yaml.org,2002:str"
_ScalarConstructor = Callable[[yaml.constructor.SafeConstructor, yaml.ScalarNode], Any]


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """The safe loader with implicit-tag resolution memoised per (kind, value, implicit).

    libyaml composes nodes in C but calls back into Python's ``resolve`` for
    every scalar, which tries the implicit resolvers' regular expressions one by
    one; that was the largest single cost of loading 10,000 models. Policy
    files repeat the same keys and values, so a per-load memo removes most of it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._resolved: dict[tuple[Any, Any, Any], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if self.yaml_path_resolvers:  # pragma: no cover - nobody registers any; keep them exact
            tag: str = super().resolve(kind, value, implicit)
            return tag
        key = (kind, value, implicit)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = super().resolve(kind, value, implicit)
        return found


# A throw-away constructor instance for the scalar constructors (they keep no state
# for scalars). Calling ``construct_object`` on a shared instance instead would
# remember every node ever parsed in ``constructed_objects``, a leak.
_SCALARS = yaml.constructor.SafeConstructor()
_SCALAR_CONSTRUCTORS: dict[str, _ScalarConstructor] = {
    tag: fn
    for tag, fn in yaml.constructor.SafeConstructor.yaml_constructors.items()
    if tag
    in (
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    )
}


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Run a burst of allocations without the cyclic garbage collector.

    Parsing and validating creates hundreds of thousands of long-lived, acyclic
    objects; each generation-2 collection walks all of them, which made loading
    superlinear (10,000 models: 8.2 s, of which more than half was the collector).
    Reference counting still frees everything; the collector runs again after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with paused_gc():
        return _parse_documents(text, file)


def _parse_documents(text: str, file: str) -> tuple[list[SourceDocument], list[PolicyError]]:
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
                errors.append(PolicyError(doc.file, key_node.start_mark.line + 1, path, "mapping keys must be strings"))
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
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == _STR_TAG:
        return node.value
    construct = _SCALAR_CONSTRUCTORS.get(node.tag)
    if construct is not None:
        return construct(_SCALARS, node)
    # Rare tags (!!binary, unknown ones): the general path, which raises for unknown tags.
    try:
        return _SCALARS.construct_object(node, deep=True)
    finally:
        _SCALARS.constructed_objects.clear()
