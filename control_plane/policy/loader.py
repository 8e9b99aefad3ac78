"""Load policy files: YAML -> validated documents, or every error with file:line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from control_plane.policy.errors import FieldPath, PolicyError, PolicyErrors
from control_plane.policy.schema import API_VERSION, KINDS, Gateway, ModelRoute
from control_plane.policy.semantic import check_model
from control_plane.policy.yaml_source import SourceDocument, parse_documents

POLICY_SUFFIXES = (".yaml", ".yml")
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


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every *.yaml / *.yml below named directories, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in POLICY_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            found.append(path)
    return found


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """Read and validate; raise ``PolicyErrors`` listing every problem found."""
    texts: dict[str, str] = {}
    errors: list[PolicyError] = []
    for path in policy_files(paths):
        try:
            texts[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(PolicyError(str(path), 1, (), f"cannot read policy file: {exc}"))
    if errors:
        raise PolicyErrors(errors)
    return load_texts(texts)


def load_texts(texts: dict[str, str]) -> PolicySet:
    """Validate policy sources given as ``{file name: YAML text}``."""
    errors: list[PolicyError] = []
    models: list[Located[ModelRoute]] = []
    gateways: list[Located[Gateway]] = []
    for file, text in texts.items():
        docs, yaml_errors = parse_documents(text, file)
        errors.extend(yaml_errors)
        for doc in docs:
            value = _validate_document(doc, errors)
            if isinstance(value, ModelRoute):
                models.append(Located(value, doc))
            elif isinstance(value, Gateway):
                gateways.append(Located(value, doc))
    errors.extend(_check_across(models, gateways))
    if errors:
        raise PolicyErrors(errors)
    return PolicySet(tuple(models), gateways[0] if gateways else None, tuple(texts))


def _validate_document(doc: SourceDocument, errors: list[PolicyError]) -> ModelRoute | Gateway | None:
    def fail(path: FieldPath, message: str) -> None:
        errors.append(PolicyError(doc.file, doc.line_of(path), path, message))

    data = doc.data
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
        for err in exc.errors(include_url=False):
            fail(*_describe(err))
        return None
    if isinstance(value, ModelRoute):
        for path, message in check_model(value):
            fail(path, message)
        return value
    assert isinstance(value, Gateway)
    return value


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
