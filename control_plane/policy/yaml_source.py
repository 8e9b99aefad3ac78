"""Parse YAML into plain Python values plus a map from field path to source line.

PyYAML's libyaml composer is used (not ruamel) because validation runs on every
edit and at 10,000 models ruamel's pure-Python parser takes seconds; we only
need the node tree and its line marks here. Write-back, where comments must
survive, is a separate concern (``control_plane.sources.splice``).
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
_NULL_TAG = "tag:yaml.org,2002:null"
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
    # Paths whose value could not be read (a YAML-level error was reported there).
    broken: set[FieldPath] = field(default_factory=set)

    def line_of(self, path: FieldPath) -> int:
        """Line of the deepest known prefix of ``path`` (errors may point below a node)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


# Limits a policy source cannot exceed. They are checked before the expensive work
# (expanding aliases, validating), so no input can make a reload take long:
# a ~500-byte "billion laughs" file (7 levels of 9 aliases) otherwise expands to
# 4.8 million values and held the event loop for seconds.
MAX_FILE_BYTES = 16 << 20  # a whole file; 10,000 models in one file is about 3 MiB
MAX_DOCUMENT_BYTES = 1 << 20  # one document, like a Kubernetes object (etcd's limit is 1.5 MiB)
MAX_VALUES = 100_000  # mappings, sequences and scalars in one document, aliases expanded
MAX_DEPTH = 64  # nesting of mappings and sequences; a ModelRoute needs 8

_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def parse_documents(text: str, file: str) -> tuple[list[SourceDocument], list[PolicyError]]:
    """Every non-empty document in ``text``; YAML errors are returned, never raised."""
    if len(text) * 4 > MAX_FILE_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        return [], [PolicyError(file, 1, (), f"file too large: {size:,} bytes (the limit is {MAX_FILE_BYTES:,})")]
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
        if node is None or node.tag == _NULL_TAG:  # an empty document ("---" then nothing, or "~")
            continue
        line = node.start_mark.line + 1
        doc = SourceDocument(file=file, index=index, line=line, data=None)
        size = node.end_mark.index - node.start_mark.index
        if size > MAX_DOCUMENT_BYTES:
            message = f"document too large: {size:,} characters (the limit is {MAX_DOCUMENT_BYTES:,})"
            errors.append(PolicyError(file, line, (), message))
            doc.broken.add(())
        else:
            try:
                doc.data = _Converter(doc, errors).value(node, (), 0)
            except _Abandoned as exc:
                errors.append(PolicyError(file, exc.line, exc.path, exc.message))
                doc.data, doc.broken = _identity(node), {()}
        docs.append(doc)
    return docs, errors


def _identity(node: yaml.Node) -> dict[str, Any] | None:
    """``kind`` and ``metadata.name`` of a document that could not be read whole.

    Enough for the cross-document checks to know which model the broken
    document meant, so they do not also report it as missing.
    """
    if not isinstance(node, yaml.MappingNode):
        return None
    out: dict[str, Any] = {}
    for key, value in node.value:
        if key.value == "kind" and isinstance(value, yaml.ScalarNode):
            out["kind"] = value.value
        elif key.value == "metadata" and isinstance(value, yaml.MappingNode):
            for inner_key, inner in value.value:
                if inner_key.value == "name" and isinstance(inner, yaml.ScalarNode):
                    out["metadata"] = {"name": inner.value}
    return out


class _Abandoned(Exception):
    """The document cannot be read at all (too big, too deep, recursive)."""

    def __init__(self, line: int, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


# What a value that could not be read becomes; validation errors at or below its
# path are dropped, since the YAML error already says what is wrong there.
UNREADABLE = object()


class _Converter:
    """Node tree -> plain Python values, recording line marks and bounding the work.

    Aliases are nodes shared by several parents: each use is expanded again (the
    validated models must not share mutable values), so expansion is what
    ``MAX_VALUES`` bounds. A node that contains itself is a recursive alias.
    """

    __slots__ = ("_doc", "_errors", "_open", "_values")

    def __init__(self, doc: SourceDocument, errors: list[PolicyError]) -> None:
        self._doc = doc
        self._errors = errors
        self._values = 0
        self._open: set[int] = set()  # ids of the collections being converted: this node's ancestors

    def _fail(self, node: yaml.Node, path: FieldPath, message: str) -> Any:
        self._errors.append(PolicyError(self._doc.file, node.start_mark.line + 1, path, message))
        self._doc.broken.add(path)
        return UNREADABLE

    def value(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        doc = self._doc
        doc.lines.setdefault(path, node.start_mark.line + 1)
        self._values += 1
        if self._values > MAX_VALUES:
            raise _Abandoned(
                node.start_mark.line + 1,
                path,
                f"document too large: more than {MAX_VALUES:,} values (counting every use of an alias)",
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if depth >= MAX_DEPTH:
            raise _Abandoned(node.start_mark.line + 1, path, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self._open:
            raise _Abandoned(node.start_mark.line + 1, path, "recursive alias: an anchor is used inside itself")
        if node.tag not in _COLLECTION_TAGS:
            kind = "mapping" if isinstance(node, yaml.MappingNode) else "sequence"
            return self._fail(node, path, f"unsupported tag {_short(node.tag)!r} on a {kind}")
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        doc = self._doc
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are taken verbatim: YAML 1.1 would turn `on:` (retries.on) into True.
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, path, "mapping keys must be strings")
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in out:
                self._fail(key_node, child, "duplicate key")
                continue
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = self.value(value_node, child, depth + 1)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        if node.tag == _STR_TAG:
            return node.value
        try:
            construct = _SCALAR_CONSTRUCTORS.get(node.tag)
            if construct is not None:
                return construct(_SCALARS, node)
            # Rare tags (!!binary, unknown ones): the general path, which raises for unknown tags.
            try:
                return _SCALARS.construct_object(node, deep=True)
            finally:
                _SCALARS.constructed_objects.clear()
        except Exception as exc:  # constructors raise ValueError, OverflowError, ConstructorError...
            problem = getattr(exc, "problem", None) or str(exc)
            text = node.value if len(node.value) <= 40 else f"{node.value[:40]}..."
            return self._fail(node, path, f"cannot read {text!r} as {_short(node.tag)}: {problem}")


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")
