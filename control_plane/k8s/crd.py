"""The ModelRoute and Gateway CustomResourceDefinitions, generated from the policy schema.

One schema: a resource's ``spec`` is exactly a policy file's ``spec``, and its
``openAPIV3Schema`` is derived here from the same pydantic models the file loader
validates with (``control_plane/policy/schema.py``). The API server then refuses what
it can check itself (types, ranges, patterns, unknown fields under kubectl's strict
field validation); the controller validates every accepted resource with the models
and reports the rest (cross-field rules) in its status, as the file mode prints them.

Kubernetes wants a *structural* schema: no ``$ref``, a type on every node (or
``x-kubernetes-int-or-string`` / ``x-kubernetes-preserve-unknown-fields``), no
``additionalProperties`` beside ``properties``, OpenAPI 3.0 keywords. ``structural``
turns pydantic's JSON Schema (draft 2020-12) into that. Defaults are left out on
purpose: the API server would write them into stored objects, and a resource should
read back as it was written, like a policy file.

Regenerate the checked-in file with ``switchyard crds > deploy/kubernetes/crds.yaml``
(a test fails when it is stale).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from control_plane.policy.schema import GatewaySpec, Metadata, ModelRouteSpec

GROUP = "switchyard.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Carried over as they are: OpenAPI 3.0 has the same meaning for these.
_KEPT = (
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
)


class SchemaError(ValueError):
    """The pydantic schema uses a construct this converter does not map (a bug to fix here)."""


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node, with ``$ref`` resolved from ``defs``, as a structural OpenAPI schema."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return structural({**defs[name], **extra}, defs)
    if "anyOf" in node:
        return _any_of(node, defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    kind = node.get("type")
    if kind not in ("object", "array", "string", "integer", "number", "boolean"):
        raise SchemaError(f"no structural form for {node!r}")
    out: dict[str, Any] = {"type": kind, **{k: node[k] for k in _KEPT if k in node}}
    # draft 2020-12 bounds are numbers; OpenAPI 3.0's are flags on minimum/maximum.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:
            out[bound] = node[exclusive]
            out[exclusive] = True
    if kind == "array":
        out["items"] = structural(node["items"], defs)
    if kind == "object":
        _object(node, out, defs)
    return out


def _object(node: dict[str, Any], out: dict[str, Any], defs: dict[str, Any]) -> None:
    if "properties" in node:
        # additionalProperties: false (unknown keys refused) is what Kubernetes does by
        # itself for a structural schema: it prunes them, and strict field validation
        # (kubectl's default) refuses them.
        out["properties"] = {key: structural(value, defs) for key, value in node["properties"].items()}
        return
    # A map. Its keys' pattern cannot be said in a structural schema; the models check it.
    values = node.get("additionalProperties")
    if values is None and "patternProperties" in node:
        (values,) = node["patternProperties"].values()
    if isinstance(values, dict):
        out["additionalProperties"] = structural(values, defs)
    else:
        out["x-kubernetes-preserve-unknown-fields"] = True


def _any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in node["anyOf"] if o != {"type": "null"}]
    nullable = len(options) < len(node["anyOf"])
    outer = {k: v for k, v in node.items() if k in ("description",)}
    if len(options) == 1:
        out = structural({**options[0], **outer}, defs)
    elif sorted(str(o.get("type")) for o in options) == ["integer", "string"]:
        # A port by number or name: Kubernetes' own int-or-string (the models check each form).
        out = {**outer, "x-kubernetes-int-or-string": True}
    else:
        # The other union in the policy schema: a header match, an object or its
        # string shorthand. A structural schema cannot type "string or object".
        out = {**outer, "x-kubernetes-preserve-unknown-fields": True}
    if nullable:
        out["nullable"] = True
    return out


def resource_schema(spec: type[BaseModel], *, spec_required: bool) -> dict[str, Any]:
    """The openAPIV3Schema of a resource whose ``spec`` is ``spec`` and whose status is the controller's."""
    schema = spec.model_json_schema()
    defs = schema.pop("$defs", {})
    name_pattern = Metadata.model_json_schema()["properties"]["name"]["pattern"]
    out: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": structural(schema, defs),
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        # Names become Envoy cluster and stat names: a DNS label (63 characters), not
        # the longer subdomain Kubernetes allows. CEL may look at metadata.name here.
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.matches('{name_pattern}')",
                "message": "metadata.name must be a DNS label (lowercase letters, digits, '-'; at most 63)",
            },
            {"rule": "self.metadata.name.size() <= 63", "message": "metadata.name is longer than 63 characters"},
        ],
    }
    if spec_required:
        out["required"] = ["spec"]
    return out


def _crd(kind: str, plural: str, short: str, spec: type[BaseModel], *, spec_required: bool) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "shortNames": [short]},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        _condition_column("Accepted"),
                        _condition_column("Programmed"),
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": resource_schema(spec, spec_required=spec_required)},
                }
            ],
        },
    }


def _condition_column(condition: str) -> dict[str, str]:
    return {"name": condition, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status'}


def crds() -> list[dict[str, Any]]:
    return [
        _crd("ModelRoute", "modelroutes", "mr", ModelRouteSpec, spec_required=True),
        _crd("Gateway", "gateways", "syg", GatewaySpec, spec_required=False),
    ]


class _NoAliases(yaml.SafeDumper):
    """Repeated sub-schemas written out each time: anchors would make the manifest hard to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crds_yaml() -> str:
    header = "# Generated by `switchyard crds` from control_plane/policy/schema.py: do not edit.\n"
    return header + yaml.dump_all(crds(), Dumper=_NoAliases, sort_keys=False, width=120)
