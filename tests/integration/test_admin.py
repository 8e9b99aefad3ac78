"""The admin API and CLI against the real `switchyard serve` and a real Envoy."""

from __future__ import annotations

import difflib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import ControlPlane
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

OPERATOR, READER = "operator-token-0123456789", "reader-token-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("admin-stack"), delta=False)
    try:
        yield stack
    finally:
        stack.close()


def commented(stack: Stack, traffic: str) -> str:
    text = stack.policy(traffic=traffic)
    text = text.replace("kind: ModelRoute\n", "# Sentiment: owned by ml-platform.\nkind: ModelRoute\n")
    return text.replace(
        f"  traffic: {traffic}\n", f"  # the canary split; the API edits this line\n  traffic: {traffic}\n"
    )


def cli(stack: Stack, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHYARD_URL": stack.control_plane.url}
    env.pop("SWITCHYARD_TOKEN", None)
    if token:
        env["SWITCHYARD_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args], env=env, capture_output=True, text=True, timeout=60
    )


def versions(stack: Stack, n: int) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for (status, version), count in stack.send(n).items():
        assert status == 200
        out[version] = out.get(version, 0) + count
    return out


def changed(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]


def test_cli_shift_moves_real_traffic_and_edits_one_line(stack: Stack) -> None:
    original = commented(stack, "{sentiment-v3: 100, sentiment-v4: 0}")
    stack.apply(original)
    assert versions(stack, 30) == {"sentiment-v3": 30}

    done = cli(stack, "shift", "sentiment", "sentiment-v3=0", "sentiment-v4=100")
    assert done.returncode == 0, done.stderr
    assert "shift accepted" in done.stdout and "sentiment-v4 100%" in done.stdout
    stack.wait_synced()
    assert versions(stack, 30) == {"sentiment-v4": 30}
    assert changed(original, stack.policy_file.read_text()) == [
        "-  traffic: {sentiment-v3: 100, sentiment-v4: 0}",
        "+  traffic: {sentiment-v3: 0, sentiment-v4: 100}",
    ]

    done = cli(stack, "shift", "sentiment", "sentiment-v3=50", "sentiment-v4=50", "--json")
    assert done.returncode == 0, done.stderr
    stack.wait_synced()
    got = versions(stack, 300)
    assert set(got) == {"sentiment-v3", "sentiment-v4"} and 90 <= got["sentiment-v4"] <= 210, got

    rejected = cli(stack, "shift", "sentiment", "sentiment-v3=50", "sentiment-v4=40")
    assert rejected.returncode == 1 and "weights must sum to 100 (got 90)" in rejected.stderr

    status = cli(stack, "status", "sentiment")
    assert status.returncode == 0 and "sentiment-v3 50%, sentiment-v4 50%" in status.stdout
    envoys = cli(stack, "envoys", "--json")
    assert envoys.returncode == 0 and '"in_sync": true' in envoys.stdout
    audit = cli(stack, "audit", "--model", "sentiment")
    assert audit.returncode == 0 and "rejected (invalid)" in audit.stdout


def test_stale_if_match_is_412_and_changes_nothing(stack: Stack) -> None:
    url = stack.control_plane.url
    etag = httpx.get(f"{url}/v1/models/sentiment").headers["etag"]
    first = httpx.put(
        f"{url}/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 100, "sentiment-v4": 0}},
        headers={"If-Match": etag},
    )
    assert first.status_code == 200, first.text
    synced = stack.wait_synced(first.json()["snapshot_version"])
    text = stack.policy_file.read_text()
    second = httpx.put(
        f"{url}/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 0, "sentiment-v4": 100}},
        headers={"If-Match": etag},
    )
    assert second.status_code == 412 and "changed since you read it" in second.json()["message"]
    assert stack.policy_file.read_text() == text
    assert stack.control_plane.status()["snapshot_version"] == synced["snapshot_version"]
    assert versions(stack, 20) == {"sentiment-v3": 20}


def test_restarted_control_plane_serves_the_same_split_and_keeps_its_audit(stack: Stack) -> None:
    url = stack.control_plane.url
    shifted = httpx.put(f"{url}/v1/models/sentiment/traffic", json={"weights": {"sentiment-v4": 100}})
    assert shifted.status_code == 200, shifted.text
    stack.wait_synced(shifted.json()["snapshot_version"])
    records = httpx.get(f"{url}/v1/audit").json()["records"]
    assert records[0]["new"]["traffic"] == {"sentiment-v4": 100}

    old = stack.control_plane
    old.stop(signal.SIGTERM)
    stack.control_plane = ControlPlane(stack.policy_dir, stack.workdir, xds_port=old.xds_port).start()
    new_url = stack.control_plane.url
    model = httpx.get(f"{new_url}/v1/models/sentiment").json()
    assert model["traffic"] == {"sentiment-v4": 100}
    assert model["snapshot_version"] == shifted.json()["snapshot_version"]
    assert httpx.get(f"{new_url}/v1/audit").json()["records"] == records
    stack.wait_synced()
    assert versions(stack, 20) == {"sentiment-v4": 20}
    # history survived too: rollback knows the split before the last change
    back = httpx.post(f"{new_url}/v1/models/sentiment/rollback")
    assert back.status_code == 200 and back.json()["new"]["traffic"] == {"sentiment-v3": 100, "sentiment-v4": 0}
    stack.wait_synced(back.json()["snapshot_version"])
    assert versions(stack, 20) == {"sentiment-v3": 20}


# -- a control plane with tokens (no Envoy needed) -------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    root = tmp_path_factory.mktemp("admin-secured")
    policies = root / "policies"
    policies.mkdir()
    (policies / "m.yaml").write_text(
        "apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {name: m}\nspec:\n"
        '  versions:\n    a: {endpoints: ["127.0.0.1:9"]}\n    b: {endpoints: ["127.0.0.1:10"]}\n'
        "  traffic: {a: 100, b: 0}\n"
    )
    tokens = root / "tokens.yaml"
    tokens.write_text(
        f"- {{name: olga, token: {OPERATOR}, role: operator}}\n- {{name: rita, token: {READER}, role: reader}}\n"
    )
    state = root / "state"
    plane = ControlPlane(
        policies, root, extra_args=["--tokens", str(tokens), "--state-dir", str(state)], token=OPERATOR
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


def call(plane: ControlPlane, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, f"{plane.url}{path}", headers=headers, timeout=10, **kwargs)


def test_tokens_401_403_and_bad_input_never_500(secured: ControlPlane) -> None:
    body = {"weights": {"a": 0, "b": 100}}
    assert call(secured, "GET", "/v1/models", None).status_code == 401
    assert call(secured, "PUT", "/v1/models/m/traffic", None, json=body).status_code == 401
    assert call(secured, "PUT", "/v1/models/m/traffic", "not-a-real-token-000", json=body).status_code == 401
    assert call(secured, "GET", "/v1/models", READER).status_code == 200
    forbidden = call(secured, "PUT", "/v1/models/m/traffic", READER, json=body)
    assert forbidden.status_code == 403 and "reader role" in forbidden.json()["message"]
    assert call(secured, "GET", "/v1/models/m", READER).json()["traffic"] == {"a": 100, "b": 0}

    bad: list[tuple[str, str, Any]] = [
        ("PUT", "/v1/models/m/traffic", "{oops"),
        ("PUT", "/v1/models/m/traffic", {"weights": {"a": 50, "b": 40}}),
        ("PUT", "/v1/models/m/traffic", {"weights": {"a": -10, "b": 110}}),
        ("PUT", "/v1/models/m/traffic", {"weights": {"a": 50.5, "b": 49.5}}),
        ("PUT", "/v1/models/m/traffic", {"weights": {"zz": 100}}),
        ("PUT", "/v1/models/nope/traffic", body),
        ("PUT", "/v1/models/m/shadow", {"version": "b", "percent": 150}),
        ("POST", "/v1/models/m/promote", {"version": "zz"}),
        ("POST", "/v1/validate", {"policy": "a: [", "change": {"action": "rollback", "model": "m"}}),
    ]
    for method, path, payload in bad:
        kwargs: dict[str, Any] = {"content": payload} if isinstance(payload, str) else {"json": payload}
        response = call(secured, method, path, OPERATOR, headers={"content-type": "application/json"}, **kwargs)
        assert 400 <= response.status_code < 500, (path, payload, response.text)
        assert response.json()["message"]
    dry = call(secured, "POST", "/v1/validate", READER, json={"policy": "a: ["}).json()
    assert dry["valid"] is False and "malformed YAML" in dry["errors"][0]
    assert call(secured, "GET", "/v1/models/m", READER).json()["traffic"] == {"a": 100, "b": 0}
    audit = call(secured, "GET", "/v1/audit", READER).json()["records"]
    assert {r["who"] for r in audit} >= {"olga", "rita"} and not any(r["accepted"] for r in audit)

    env = {**os.environ, "SWITCHYARD_URL": secured.url, "SWITCHYARD_TOKEN": READER}
    denied = subprocess.run(
        [sys.executable, "-m", "control_plane", "promote", "m", "b"], env=env, capture_output=True, text=True
    )
    assert (
        denied.returncode == 1
        and denied.stderr
        == "switchyard promote: 'rita' has the reader role; changing traffic needs an operator token\n"
    )
    env["SWITCHYARD_TOKEN"] = OPERATOR
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "promote", "m", "b"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert call(secured, "GET", "/v1/models/m", READER).json()["traffic"] == {"b": 100}


def test_refuses_an_open_admin_api_beyond_loopback(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--policies",
            str(tmp_path / "p"),
            "--admin-address",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "without authentication" in done.stderr and "--tokens" in done.stderr
