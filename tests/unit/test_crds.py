"""The ModelRoute and Gateway CRDs: generated from the policy schema, current, accepted by
Kubernetes' own schema for CRDs, structural, and never stricter than the file mode."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from pydantic import ValidationError

from control_plane.k8s.crd import API_VERSION, crds, crds_yaml
from control_plane.policy.schema import ModelRoute
from tests.support.policy_strategies import model_routes, mutated

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "deploy" / "kubernetes" / "crds.yaml"
KUBERNETES = "1.33"  # the oldest release still maintained upstream when this was written

# Structural schemas allow only these keywords on a node (and the x-kubernetes-* ones).
ALLOWED = {
    "type",
    "description",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
}


def schema_of(kind: str) -> dict[str, Any]:
    (crd,) = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    found: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return found


MODEL_ROUTE = OAS30Validator(schema_of("ModelRoute"))


def as_resource(doc: dict[str, Any]) -> dict[str, Any]:
    """A policy file's document as the custom resource a user would apply."""
    return {**doc, "apiVersion": API_VERSION, "metadata": {"name": doc["metadata"]["name"], "namespace": "ml"}}


def test_the_checked_in_crds_are_current() -> None:
    assert CHECKED_IN.read_text() == crds_yaml(), "stale: run `switchyard crds > deploy/kubernetes/crds.yaml`"


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["metadata"]["name"])
def test_kubernetes_accepts_the_crd(crd: dict[str, Any]) -> None:
    # Strict: an unknown or misspelt field anywhere in the CRD is an error.
    kubernetes_validate.validate(crd, KUBERNETES, strict=True)


def walk(node: Any, path: str = "") -> list[str]:
    """Every way ``node`` breaks Kubernetes' structural schema rules."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return [f"{path}: not a schema"]
    problems += [f"{path}: keyword {k!r}" for k in set(node) - ALLOWED]
    typed = "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if not typed:
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties: false")
    for key, child in node.get("properties", {}).items():
        problems += walk(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += walk(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        problems += walk(node["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize("kind", ["ModelRoute", "Gateway"])
def test_the_schemas_are_structural(kind: str) -> None:
    assert walk(schema_of(kind)) == []


def test_the_example_policies_are_valid_resources() -> None:
    routes = [
        doc
        for path in sorted((ROOT / "policies").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ModelRoute"
    ]
    assert routes
    for doc in routes:
        errors = [e.message for e in MODEL_ROUTE.iter_errors(as_resource(doc))]
        assert errors == [], doc["metadata"]["name"]


def test_the_api_server_refuses_what_its_schema_can_say() -> None:
    """A few invalid specs the API server itself refuses, before the controller sees them."""
    (doc,) = [
        d for d in yaml.safe_load_all((ROOT / "policies" / "sentiment.yaml").read_text()) if d["kind"] == "ModelRoute"
    ]
    cases = {
        "weight over 100": ("traffic", {"sentiment-v3": 101}),
        "duration without a unit": ("timeout", "15"),
        "a string for a list": ("hosts", "*"),
        "an empty versions map": ("versions", {}),
    }
    for why, (field, value) in cases.items():
        bad = as_resource(copy.deepcopy(doc))
        bad["spec"][field] = value
        assert not MODEL_ROUTE.is_valid(bad), why
        with pytest.raises(ValidationError):
            ModelRoute.model_validate({**bad, "apiVersion": "switchyard/v1"})
    # metadata.name is the API server's (CEL rules, not evaluated here): a DNS label, as in files.
    rules = [v["rule"] for v in schema_of("ModelRoute")["x-kubernetes-validations"]]
    assert rules == ["self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", "self.metadata.name.size() <= 63"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_the_file_mode_accepts_the_api_server_accepts(data: st.DataObject) -> None:
    """Never stricter than the models: a spec a policy file may hold is a resource one may apply.
    (The models are stricter: cross-field rules are the controller's, reported in status.)"""
    doc = data.draw(model_routes())
    if data.draw(st.booleans()):
        doc = data.draw(mutated(copy.deepcopy(doc)))
    try:
        ModelRoute.model_validate(doc)
    except (ValidationError, TypeError, KeyError):
        return
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in MODEL_ROUTE.iter_errors(as_resource(doc))]
    assert errors == []
