"""Checks that span fields or documents: weights, declared versions, overlaps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from control_plane.policy.errors import FieldPath
from control_plane.policy.schema import ModelRoute, ShadowSpec
from model_services.protocol import PATH_PREFIX as GRPC_PATH_PREFIX

Problem = tuple[FieldPath, str]


def check_model(route: ModelRoute) -> Iterator[Problem]:
    """Everything wrong inside one ModelRoute, as (field path, message)."""
    spec = route.spec
    declared = spec.versions.keys()
    if spec.traffic is None:
        if len(declared) != 1:
            yield (
                ("spec",),
                (f"traffic is required when more than one version is declared ({', '.join(declared)})"),
            )
    else:
        yield from _check_split(("spec", "traffic"), spec.traffic, declared)
        yield from _check_shadows(("spec", "shadow"), spec.shadow, spec.traffic, declared)
    with_grpc = [name for name, v in spec.versions.items() if v.serves_grpc]
    if with_grpc and len(with_grpc) != len(spec.versions):
        for name in spec.versions.keys() - set(with_grpc):
            yield (
                ("spec", "versions", name),
                (
                    f"grpc_endpoints (or service.grpc_port) is missing: it is declared for {', '.join(with_grpc)},"
                    " and a model serves gRPC from every version or from none"
                    " (a split or pin may send a call to any of them)"
                ),
            )
    if spec.path_prefix.startswith(GRPC_PATH_PREFIX.rstrip("/")):
        yield (
            ("spec", "path_prefix"),
            f"{spec.path_prefix!r} is taken: paths under {GRPC_PATH_PREFIX} are the gRPC inference service's",
        )
    if spec.canary is not None:
        for key in ("candidate", "baseline"):
            version = getattr(spec.canary, key)
            if version is not None and version not in declared:
                yield ("spec", "canary", key), f"version {version!r} is not declared in spec.versions"
    names: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        path: FieldPath = ("spec", "rules", i)
        if rule.name in names:
            yield (
                (*path, "name"),
                f"duplicate rule name {rule.name!r} (also rules[{names[rule.name]}])",
            )
        names.setdefault(rule.name, i)
        yield from _check_split((*path, "traffic"), rule.traffic, declared)
        if rule.shadow is not None:
            yield from _check_shadows((*path, "shadow"), rule.shadow, rule.traffic, declared)
        else:  # the rule inherits the model's mirrors; they must still not mirror to themselves
            for j, shadow in enumerate(spec.shadow):
                if rule.traffic.get(shadow.version, 0) > 0:
                    yield (
                        (*path, "traffic", shadow.version),
                        (
                            f"spec.shadow[{j}] mirrors to {shadow.version!r}, which this rule also serves:"
                            " a version cannot shadow itself (give the rule its own shadow list)"
                        ),
                    )


def _check_split(path: FieldPath, weights: Mapping[str, int], declared: Sequence[str] | object) -> Iterator[Problem]:
    if not weights:
        yield path, "traffic must name at least one version"
        return
    for version in weights:
        if version not in declared:  # type: ignore[operator]
            yield (*path, version), f"version {version!r} is not declared in spec.versions"
    total = sum(weights.values())
    if total != 100:
        yield path, f"weights must sum to 100 (got {total})"


def _check_shadows(
    path: FieldPath, shadows: Sequence[ShadowSpec], weights: Mapping[str, int], declared: object
) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, shadow in enumerate(shadows):
        where = (*path, i, "version")
        if shadow.version not in declared:  # type: ignore[operator]
            yield where, f"version {shadow.version!r} is not declared in spec.versions"
        elif weights.get(shadow.version, 0) > 0:
            yield (
                where,
                (f"{shadow.version!r} already receives live traffic here: a version cannot shadow itself"),
            )
        if shadow.version in seen:
            yield where, f"{shadow.version!r} is mirrored twice"
        seen.add(shadow.version)
