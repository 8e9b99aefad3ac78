"""Load policy files: YAML -> validated documents, or every error with file:line."""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from control_plane.policy.errors import FieldPath, PolicyError, PolicyErrors
from control_plane.policy.schema import API_VERSION, KINDS, Fleet, Gateway, ModelRoute
from control_plane.policy.semantic import Problem, check_model
from control_plane.policy.yaml_source import SourceDocument, parse_documents, paused_gc

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Located(Generic[T]):
    """A validated document and where it came from (for errors and write-back)."""

    value: T
    source: SourceDocument


@dataclass(frozen=True, slots=True)
class PolicySet:
    models: tuple[Located[ModelRoute], ...]
    gateway: Located[Gateway] | None
    files: tuple[str, ...]
    fleets: tuple[Located[Fleet], ...] = ()


@dataclass(frozen=True, slots=True)
class _FileResult:
    text: str
    models: tuple[Located[ModelRoute], ...]
    gateways: tuple[Located[Gateway], ...]
    fleets: tuple[Located[Fleet], ...]
    errors: tuple[PolicyError, ...]
    rejected_models: tuple[str, ...] = ()  # names of ModelRoute documents that did not validate


# Results per file, reused while the file's text is unchanged: an edit to one
# file among many re-parses only that file. The values are immutable (frozen
# pydantic models, frozen Located); bounded so a long-lived process cannot grow
# without limit when files come and go.
_FILES: OrderedDict[str, _FileResult] = OrderedDict()
_FILES_MAX = 65_536
# Validated documents by their parsed content, so that in one big file an edit
# re-validates only the documents that changed. Only valid documents are kept:
# errors carry line numbers, which depend on where the document sits.
_DOCS: OrderedDict[tuple[str, str], ModelRoute | Gateway | Fleet] = OrderedDict()
_DOCS_MAX = 65_536


def load_texts(texts: dict[str, str]) -> PolicySet:
    """Validate policy sources given as ``{file name: YAML text}``."""
    errors: list[PolicyError] = []
    models: list[Located[ModelRoute]] = []
    gateways: list[Located[Gateway]] = []
    fleets: list[Located[Fleet]] = []
    rejected: set[str] = set()
    with paused_gc():
        for file, text in texts.items():
            result = _load_file(file, text)
            models.extend(result.models)
            gateways.extend(result.gateways)
            fleets.extend(result.fleets)
            errors.extend(result.errors)
            rejected.update(result.rejected_models)
        errors.extend(_check_across(models, gateways))
        errors.extend(_check_fleets(models, fleets, rejected))
    if errors:
        order = {file: i for i, file in enumerate(texts)}
        raise PolicyErrors(sorted(errors, key=lambda e: (order.get(e.file, len(order)), e.line)))
    return PolicySet(tuple(models), gateways[0] if gateways else None, tuple(texts), tuple(fleets))


def _load_file(file: str, text: str) -> _FileResult:
    cached = _FILES.get(file)
    if cached is not None and cached.text == text:
        _FILES.move_to_end(file)
        return cached
    try:
        result = _read_file(file, text)
    except Exception as exc:  # a bug; the file is rejected, the reload still only accepts or rejects
        log.exception("unexpected error while loading %s", file)
        message = f"cannot load this file: internal error {type(exc).__name__}: {exc} (please report it)"
        return _FileResult(text, (), (), (), (PolicyError(file, 1, (), message),))
    _FILES[file] = result
    _FILES.move_to_end(file)
    if len(_FILES) > _FILES_MAX:
        _FILES.popitem(last=False)
    return result


def _read_file(file: str, text: str) -> _FileResult:
    errors: list[PolicyError] = []
    models: list[Located[ModelRoute]] = []
    gateways: list[Located[Gateway]] = []
    fleets: list[Located[Fleet]] = []
    rejected: list[str] = []
    docs, yaml_errors = parse_documents(text, file)
    errors.extend(yaml_errors)
    for doc in docs:
        value = _validate_cached(doc, errors)
        if value is None and (name := _route_name(doc.data)) is not None:
            rejected.append(name)
        if isinstance(value, ModelRoute):
            models.append(Located(value, doc))
        elif isinstance(value, Gateway):
            gateways.append(Located(value, doc))
        elif isinstance(value, Fleet):
            fleets.append(Located(value, doc))
    return _FileResult(text, tuple(models), tuple(gateways), tuple(fleets), tuple(errors), tuple(rejected))


def _route_name(data: Any) -> str | None:
    """The name an invalid ModelRoute document meant to declare, if it says."""
    if not isinstance(data, dict) or data.get("kind") != "ModelRoute":
        return None
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def _validate_cached(doc: SourceDocument, errors: list[PolicyError]) -> ModelRoute | Gateway | Fleet | None:
    # repr() tells 1, 1.0, True and "1" apart and keeps key order (which the
    # validated model keeps too), so equal keys validate to equal models.
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    key = (kind if isinstance(kind, str) else "", repr(doc.data))
    found = _DOCS.get(key)
    if found is not None:
        _DOCS.move_to_end(key)
        return found
    before = len(errors)
    value = _validate_document(doc, errors)
    if value is not None and len(errors) == before:
        _DOCS[key] = value
        if len(_DOCS) > _DOCS_MAX:
            _DOCS.popitem(last=False)
    return value


def _validate_document(doc: SourceDocument, errors: list[PolicyError]) -> ModelRoute | Gateway | Fleet | None:
    def fail(path: FieldPath, message: str) -> None:
        # A value YAML could not read was reported already; what validation says
        # about it (missing, wrong type) would only repeat that.
        if not any(path[: len(b)] == b for b in doc.broken):
            errors.append(PolicyError(doc.file, doc.line_of(path), path, message))

    data = doc.data
    if () in doc.broken:
        return None
    if not isinstance(data, dict):
        fail((), f"a policy document must be a mapping, got {type(data).__name__}")
        return None
    if data.get("apiVersion") != API_VERSION:
        fail(("apiVersion",), f"must be {API_VERSION!r} (got {data.get('apiVersion')!r})")
        return None
    kind = data.get("kind")
    model_cls = KINDS.get(kind) if isinstance(kind, str) else None
    if model_cls is None:
        fail(("kind",), f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        return None
    try:
        value = model_cls.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors(include_url=False)]
        for path, message in problems:
            fail(path, message)
        if model_cls is ModelRoute:
            for path, message in _independent_problems(data, [p for p, _ in problems] + list(doc.broken)):
                fail(path, message)
        return None
    if isinstance(value, ModelRoute):
        for path, message in check_model(value):
            fail(path, message)
        return value
    assert isinstance(value, Gateway | Fleet)
    return value


def _independent_problems(data: dict[str, Any], bad: list[FieldPath]) -> list[Problem]:
    """The cross-field problems of a ModelRoute that failed validation, as far as they do not
    follow from the fields already reported.

    Without this a user fixes a typo, runs validate again, and only then learns
    that the weights do not sum to 100. The bad fields are removed (a list they
    sit in goes whole, since removing one item would shift the others' indices),
    the rest is validated again, and its cross-field checks run; a problem at or
    around a removed field, or naming a removed version, follows from an error
    already shown and is left out.
    """
    removed: list[FieldPath] = []
    pruned = copy.deepcopy(data)
    for path in bad:
        cut = path[: next((i for i, part in enumerate(path) if isinstance(part, int)), len(path))]
        if cut[:2] == ("spec", "versions") and len(cut) > 3 and cut[3] == "endpoints":
            cut = cut[:3]  # a version without endpoints is no version: leave it out whole
        if len(cut) < 2:
            return []  # the document's shape itself is wrong: nothing sensible is left to check
        parent: Any = pruned
        for part in cut[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(cut[-1], None)
        removed.append(cut)
    try:
        route = ModelRoute.model_validate(pruned)
    except ValidationError:
        return []  # a required field was among the bad ones
    versions = {str(r[2]) for r in removed if r[:2] == ("spec", "versions") and len(r) == 3}

    def follows(path: FieldPath, message: str) -> bool:
        overlaps = any(path[: len(r)] == r or r[: len(path)] == path for r in removed)
        return overlaps or any(f"'{v}'" in message for v in versions)

    return [(path, message) for path, message in check_model(route) if not follows(path, message)]


def _describe(err: Any) -> tuple[FieldPath, str]:
    """Turn a pydantic error into (field path, a message a user understands)."""
    path: FieldPath = tuple(part for part in err["loc"] if part != "[key]")
    kind = err["type"]
    if kind == "extra_forbidden":
        return path, "unknown field (not part of the switchyard/v1 schema; check the spelling)"
    if kind == "missing":
        return path, "required field is missing"
    if kind == "string_pattern_mismatch" and "[key]" in err["loc"]:
        return path, f"{path[-1]!r} is not a valid name (lowercase letters, digits and '-')"
    message = str(err["msg"])
    message = message.removeprefix("Value error, ")
    if kind in ("int_type", "int_from_float", "int_parsing", "float_type"):
        wanted = "a number" if kind == "float_type" else "an integer"
        message = f"must be {wanted} (got {err['input']!r})"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(err["ctx"].values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # "<= 100", not "<= 100.0", for a percentage
        message = f"must be {bounds[kind]} {limit} (got {err['input']!r})"
    return path, message


def _check_across(models: list[Located[ModelRoute]], gateways: list[Located[Gateway]]) -> list[PolicyError]:
    errors: list[PolicyError] = []
    names: dict[str, SourceDocument] = {}
    claimed: dict[tuple[str, str], tuple[str, SourceDocument]] = {}
    for located in models:
        route, doc = located.value, located.source
        name = route.metadata.name
        first = names.get(name)
        if first is not None:
            errors.append(
                PolicyError(
                    doc.file,
                    doc.line_of(("metadata", "name")),
                    ("metadata", "name"),
                    f"duplicate model name {name!r} (first defined at {first.file}:{first.line})",
                )
            )
            continue
        names[name] = doc
        for i, host in enumerate(route.spec.hosts):
            key = (host, route.spec.path_prefix)
            other = claimed.get(key)
            if other is not None:
                other_name, other_doc = other
                errors.append(
                    PolicyError(
                        doc.file,
                        doc.line_of(("spec", "hosts", i)),
                        ("spec", "hosts", i),
                        f"host {host!r} with path_prefix {route.spec.path_prefix!r} overlaps model "
                        f"{other_name!r} ({other_doc.file}:{other_doc.line})",
                    )
                )
            claimed[key] = (name, doc)
    for extra in gateways[1:]:
        first_gw = gateways[0].source
        errors.append(
            PolicyError(
                extra.source.file,
                extra.source.line,
                ("kind",),
                f"only one Gateway is allowed (first at {first_gw.file}:{first_gw.line})",
            )
        )
    return errors


def _check_fleets(
    models: list[Located[ModelRoute]], fleets: list[Located[Fleet]], rejected: set[str]
) -> list[PolicyError]:
    """A Fleet runs versions of an existing ModelRoute, at most one Fleet per model.

    A Fleet of a ModelRoute that is itself invalid is not checked: its errors
    already say what to fix, and "no ModelRoute named ..." would mislead.
    """
    errors: list[PolicyError] = []
    routes = {m.value.metadata.name: m.value for m in models}
    seen: dict[str, SourceDocument] = {}
    for located in fleets:
        fleet, doc = located.value, located.source
        name = fleet.metadata.name
        where: FieldPath = ("metadata", "name")
        if name in seen:
            first = seen[name]
            errors.append(
                PolicyError(
                    doc.file,
                    doc.line_of(where),
                    where,
                    f"duplicate Fleet for model {name!r} (first at {first.file}:{first.line})",
                )
            )
            continue
        seen[name] = doc
        route = routes.get(name)
        if route is None and name in rejected:
            continue
        if route is None:
            errors.append(
                PolicyError(
                    doc.file,
                    doc.line_of(where),
                    where,
                    f"no ModelRoute named {name!r}: a Fleet runs the versions of one",
                )
            )
            continue
        for version in fleet.spec.versions:
            if version not in route.spec.versions:
                path: FieldPath = ("spec", "versions", version)
                errors.append(
                    PolicyError(
                        doc.file,
                        doc.line_of(path),
                        path,
                        f"version {version!r} is not declared in ModelRoute {name!r}",
                    )
                )
    return errors
