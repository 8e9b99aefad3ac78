"""The ``kserve`` SDK's inference clients (REST, protocol v2, and gRPC), unchanged and with
their defaults, against real model services through a real Envoy: health, model readiness,
infer with three texts as JSON and with binary inputs, an unknown model's error message,
and gRPC calls naming a version answered by that version, whatever the split.

The SDK runs in its own virtualenv (it pins protobuf<7; see tests/support/kserve_calls.py),
which ``.ci/setup`` makes; without it the test fails (a skip would pass unseen in CI)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.grpc_replicas import GrpcReplica, grpc_policy, running_replicas
from tests.support.procs import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
SCRIPT = ROOT / "tests" / "support" / "kserve_calls.py"
VERSIONS = ("sentiment-v3", "sentiment-v4")


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    assert KSERVE_PYTHON.exists(), f"{KSERVE_PYTHON} is missing: bash .ci/setup makes it"
    return KSERVE_PYTHON


@pytest.fixture(scope="module")
def replicas(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GrpcReplica]]:
    model_dir = model_store / "sentiment" / "sentiment-v3"
    with running_replicas(model_dir, tmp_path_factory.mktemp("kserve-replicas"), VERSIONS) as started:
        yield started


def run_calls(python: Path, stack: Stack) -> dict[str, Any]:
    address = stack.url.removeprefix("http://")
    done = subprocess.run(
        [str(python), str(SCRIPT), stack.url, address, *VERSIONS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"kserve client calls failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_kserve_clients_work_through_envoy(kserve_python: Path, stack: Stack, replicas: dict[str, GrpcReplica]) -> None:
    stack.apply(grpc_policy(stack.listener_port, replicas, "traffic: {sentiment-v3: 50, sentiment-v4: 50}"))
    wait_for(lambda: httpx.get(f"{stack.url}/v2/health/ready").status_code == 200, what="REST through Envoy")
    result = run_calls(kserve_python, stack)

    rest = result["rest"]
    assert rest["live"] is True and rest["ready"] is True and rest["model_ready"] is True
    assert rest["json_labels"] == ["negative", "positive", "negative"]
    assert rest["json_probabilities_shape"] == [3, 2]
    assert isinstance(rest["binary_header_length"], int), "the client did not send binary inputs"
    assert rest["binary_labels"] == rest["json_labels"]
    assert rest["unknown_model_error"] is not None and "unknown model 'no-such-model'" in rest["unknown_model_error"]

    grpc = result["grpc"]
    assert grpc["live"] is True and grpc["ready"] is True and grpc["model_ready"] is True
    assert grpc["labels"] == ["negative", "positive", "negative"]
    for version in VERSIONS:
        assert grpc["answered_by"][version] == [version] * 10
