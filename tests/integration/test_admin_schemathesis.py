"""schemathesis against the admin API's own OpenAPI, on a real `switchyard serve`.

Generated requests (valid and invalid, with an operator token) must never get a
5xx, every answer must match the schema the API publishes, and afterwards the
policy files still validate and the control plane is healthy. Bounded in CI:
``SWITCHYARD_SCHEMATHESIS_EXAMPLES`` per operation (default 25).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis import checks

from control_plane.plane import ServeOptions, build
from control_plane.sources.files import load_policies
from tests.support.procs import ControlPlane

pytestmark = [pytest.mark.integration]

OPERATOR = "operator-token-0123456789abcdef"
EXAMPLES = int(os.environ.get("SWITCHYARD_SCHEMATHESIS_EXAMPLES", "25"))
POLICIES = Path(__file__).parents[2] / "policies"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    policies = workdir / "policies"
    shutil.copytree(POLICIES, policies)
    tokens = workdir / "tokens.yaml"
    tokens.write_text(f"- {{name: olga, token: {OPERATOR}, role: operator}}\n")
    cp = ControlPlane(policies, workdir, extra_args=["--tokens", str(tokens), "--state-dir", str(workdir / "state")])
    cp.headers = {"Authorization": f"Bearer {OPERATOR}"}
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        assert cp.process is not None
        log = cp.process.log()
        assert "Traceback" not in log and "admin API error" not in log, log[-3000:]
        load_policies([policies])  # the files the API wrote back are still valid


def _openapi() -> dict[str, Any]:
    """The admin API's OpenAPI document, from the same app code the server runs.

    Built here rather than fetched, because the operations are enumerated when
    the module is collected (schemathesis' lazy fixture loader does not work
    with pytest 9); ``test_the_server_publishes_this_schema`` checks they agree.
    """
    return build(ServeOptions(policies=[], state_dir=Path("/nonexistent"))).app.openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_server_publishes_this_schema(control_plane: ControlPlane) -> None:
    assert httpx.get(f"{control_plane.url}/openapi.json", timeout=5).json() == OPENAPI


# Everything schemathesis checks except positive_data_acceptance: a request the schema
# allows may still be refused on purpose (a stale If-Match is 412, an unknown model 404,
# `policy` and `change` together 422) and the schema cannot say so.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
]


def _sendable(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(key != "" and _sendable(v) for key, v in value.items())
    if isinstance(value, list):
        return bool(value) and all(_sendable(v) for v in value)
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_schema_and_never_fails(case: schemathesis.Case, control_plane: ControlPlane) -> None:
    # Query parameters named "" or holding an empty list or object do not survive the trip
    # (the client's encoding drops them), so a case generated as invalid by them arrives
    # valid and is "accepted": not the API's doing.
    assume(all(key != "" and _sendable(value) for key, value in (case.query or {}).items()))
    case.call_and_validate(base_url=control_plane.url, headers=control_plane.headers, checks=CHECKS, timeout=30)


def test_still_healthy_afterwards(control_plane: ControlPlane) -> None:
    assert httpx.get(f"{control_plane.url}/healthz", timeout=5).json() == {"status": "ok"}
