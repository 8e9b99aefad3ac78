"""The admin API in-process: changes, ETags, auth, audit, history, validation, no 500s."""

from __future__ import annotations

import asyncio
import difflib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from control_plane.admin.auth import Authenticator, Token
from control_plane.operations.audit import AuditLog
from control_plane.operations.changes import PolicyChanges
from control_plane.plane import ServeOptions
from control_plane.plane import build as build_plane
from control_plane.xds.cache import SnapshotCache

POLICY = """\
# Sentiment routing. Owner: ml-platform.
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  versions:
    sentiment-v3: {endpoints: ["127.0.0.1:8101"]}   # stable
    sentiment-v4: {endpoints: ["127.0.0.1:8201"]}
    sentiment-v5: {endpoints: ["127.0.0.1:8401"]}
  # the canary split
  traffic: {sentiment-v3: 90, sentiment-v4: 10}
  timeout: 5s
"""
OTHER = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: translate}
spec:
  path_prefix: /translate
  versions:
    en-de-1: {endpoints: ["127.0.0.1:9201"]}
"""
OPERATOR, READER = "op-token-0123456789", "reader-token-0123456789"


@dataclass
class Env:
    app: FastAPI
    client: httpx.AsyncClient
    policies: Path
    state: Path
    cache: SnapshotCache
    changes: PolicyChanges

    @property
    def file(self) -> Path:
        return self.policies / "sentiment.yaml"

    async def etag(self, model: str = "sentiment") -> str:
        response = await self.client.get(f"/v1/models/{model}")
        assert response.status_code == 200, response.text
        etag: str = response.headers["etag"]
        return etag

    def audit(self) -> list[dict[str, Any]]:
        """Oldest first, each change's intent and outcome as one record."""
        return list(reversed(AuditLog(self.state / "audit.jsonl").read(limit=100_000)))


def build(policies: Path, state: Path, tokens: list[Token] | None) -> tuple[FastAPI, SnapshotCache, PolicyChanges]:
    """The control plane `serve` runs (one wiring), with tokens given directly."""
    plane = build_plane(ServeOptions(policies=[policies], state_dir=state), authenticator=Authenticator(tokens))
    assert plane.changes.reload(action="startup").accepted
    return plane.app, plane.cache, plane.changes


TOKENS = [Token("olga", OPERATOR.encode(), "operator"), Token("rita", READER.encode(), "reader")]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "sentiment.yaml").write_text(POLICY)
    (policies / "translate.yaml").write_text(OTHER)
    state = tmp_path / "state"
    app, cache, changes = build(policies, state, TOKENS)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=headers) as client:
        yield Env(app, client, policies, state, cache, changes)


def diff_lines(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]


# -- reading ------------------------------------------------------------------------------------


async def test_models_list_and_one_with_etag(env: Env) -> None:
    listed = (await env.client.get("/v1/models")).json()
    assert [m["name"] for m in listed["models"]] == ["sentiment", "translate"]
    assert listed["snapshot_version"] == env.cache.current.version  # type: ignore[union-attr]
    one = await env.client.get("/v1/models/sentiment")
    body = one.json()
    assert one.headers["etag"] == body["etag"] and body["etag"].startswith('"')
    assert body["traffic"] == {"sentiment-v3": 90, "sentiment-v4": 10}
    assert [v["name"] for v in body["versions"]] == ["sentiment-v3", "sentiment-v4", "sentiment-v5"]
    assert body["file"].endswith("sentiment.yaml") and body["line"] == 2
    assert (await env.client.get("/v1/models/nope")).status_code == 404
    assert (await env.client.get("/healthz")).json() == {"status": "ok"}
    assert (await env.client.get("/v1/status")).json()["models"][0]["name"] == "sentiment"
    assert (await env.client.get("/openapi.json")).json()["info"]["title"] == "Switchyard admin API"
    assert (await env.client.get("/docs")).status_code == 200


# -- changing ----------------------------------------------------------------------------------


async def test_shift_writes_one_line_publishes_once_and_audits(env: Env) -> None:
    etag = await env.etag()
    generation = env.cache.generation
    response = await env.client.put(
        "/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 75, "sentiment-v4": 25}},
        headers={"If-Match": etag},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] and body["new"]["traffic"] == {"sentiment-v3": 75, "sentiment-v4": 25}
    assert body["snapshot_version"] == env.cache.current.version  # type: ignore[union-attr]
    assert response.headers["etag"] == body["etag"] != etag
    assert diff_lines(POLICY, env.file.read_text()) == [
        "-  traffic: {sentiment-v3: 90, sentiment-v4: 10}",
        "+  traffic: {sentiment-v3: 75, sentiment-v4: 25}",
    ]
    assert env.cache.generation == generation + 1
    # What the file watcher does after our write: the same content, so nothing is published or recorded.
    assert env.changes.reload().snapshot_version == body["snapshot_version"]
    assert env.cache.generation == generation + 1
    history = (await env.client.get("/v1/models/sentiment/history")).json()["history"]
    assert [(h["who"], h["action"], h["traffic"]) for h in history] == [
        ("file", "startup", {"sentiment-v3": 90, "sentiment-v4": 10}),
        ("olga", "shift", {"sentiment-v3": 75, "sentiment-v4": 25}),
    ]
    (record,) = env.audit()
    assert record["who"] == "olga" and record["action"] == "shift" and record["accepted"]
    assert record["old"]["traffic"] == {"sentiment-v3": 90, "sentiment-v4": 10}
    assert record["new"]["traffic"] == {"sentiment-v3": 75, "sentiment-v4": 25}
    assert record["snapshot_version"] == body["snapshot_version"]
    records = (await env.client.get("/v1/audit", params={"model": "sentiment"})).json()["records"]
    assert records == [record]
    assert (await env.client.get("/v1/audit", params={"model": "translate"})).json()["records"] == []


async def test_same_split_again_changes_nothing(env: Env) -> None:
    response = await env.client.put(
        "/v1/models/sentiment/traffic", json={"weights": {"sentiment-v4": 10, "sentiment-v3": 90}}
    )
    assert response.status_code == 200 and response.json()["changed"] is False
    assert env.file.read_text() == POLICY


async def test_stale_if_match_gets_412_and_changes_nothing(env: Env) -> None:
    stale = await env.etag()
    ok = await env.client.put(
        "/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 50, "sentiment-v4": 50}}
    )
    assert ok.status_code == 200
    text, version = env.file.read_text(), env.cache.current.version  # type: ignore[union-attr]
    response = await env.client.put(
        "/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 100}},
        headers={"If-Match": stale},
    )
    assert response.status_code == 412 and "changed since you read it" in response.json()["message"]
    assert env.file.read_text() == text and env.cache.current.version == version  # type: ignore[union-attr]
    assert [(r["outcome"], r["error"]) for r in env.audit()] == [("accepted", None), ("rejected", "stale")]


async def test_two_racing_puts_with_the_same_etag_exactly_one_wins(env: Env) -> None:
    etag = await env.etag()
    a, b = await asyncio.gather(
        env.client.put(
            "/v1/models/sentiment/traffic",
            json={"weights": {"sentiment-v3": 60, "sentiment-v4": 40}},
            headers={"If-Match": etag},
        ),
        env.client.put(
            "/v1/models/sentiment/traffic",
            json={"weights": {"sentiment-v3": 20, "sentiment-v4": 80}},
            headers={"If-Match": etag},
        ),
    )
    assert sorted([a.status_code, b.status_code]) == [200, 412]
    winner = a if a.status_code == 200 else b
    served = (await env.client.get("/v1/models/sentiment")).json()["traffic"]
    assert served == winner.json()["new"]["traffic"]


async def test_shadow_promote_rollback(env: Env) -> None:
    c = env.client
    response = await c.put("/v1/models/sentiment/shadow", json={"version": "sentiment-v5", "percent": 25})
    assert response.status_code == 200, response.text
    assert "  shadow: [{version: sentiment-v5, percent: 25}]" in env.file.read_text().splitlines()
    assert (await c.get("/v1/models/sentiment")).json()["shadow"] == [{"version": "sentiment-v5", "percent": 25.0}]
    # a version that serves live traffic cannot shadow itself
    self_shadow = await c.put("/v1/models/sentiment/shadow", json={"version": "sentiment-v3", "percent": 5})
    assert self_shadow.status_code == 422 and "cannot shadow itself" in self_shadow.json()["message"]
    # promoting the shadowed version moves all traffic there and stops mirroring it
    promoted = await c.post("/v1/models/sentiment/promote", json={"version": "sentiment-v5"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["new"] == {"traffic": {"sentiment-v5": 100}, "shadow": []}
    # rollback: back to the split before the last change (v3/v4 with the mirror) ...
    back = await c.post("/v1/models/sentiment/rollback")
    assert back.status_code == 200, back.text
    assert back.json()["new"]["traffic"] == {"sentiment-v3": 90, "sentiment-v4": 10}
    assert back.json()["new"]["shadow"] == [{"version": "sentiment-v5", "percent": 25.0}]
    # ... and stopping the mirror returns the file to what it was
    off = await c.delete("/v1/models/sentiment/shadow", params={"version": "sentiment-v5"})
    assert off.status_code == 200, off.text
    assert env.file.read_text() == POLICY
    missing = await c.delete("/v1/models/sentiment/shadow", params={"version": "sentiment-v5"})
    assert missing.status_code == 404
    actions = [h["action"] for h in (await c.get("/v1/models/sentiment/history")).json()["history"]]
    assert actions == ["startup", "shadow", "promote", "rollback", "shadow-off"]


async def test_rollback_without_history_is_409(env: Env) -> None:
    response = await env.client.post("/v1/models/translate/rollback")
    assert response.status_code == 409 and "no earlier split" in response.json()["message"]


async def test_history_and_audit_survive_a_restart(env: Env, tmp_path: Path) -> None:
    await env.client.put("/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 70, "sentiment-v4": 30}})
    app, _, _ = build(env.policies, env.state, None)  # a new process: same files, same state dir
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        assert (await client.get("/v1/models/sentiment")).json()["traffic"] == {"sentiment-v3": 70, "sentiment-v4": 30}
        assert len((await client.get("/v1/audit")).json()["records"]) == 1
        back = await client.post("/v1/models/sentiment/rollback")
        assert back.status_code == 200 and back.json()["new"]["traffic"] == {"sentiment-v3": 90, "sentiment-v4": 10}


async def test_invalid_file_on_disk_blocks_changes_with_its_error(env: Env) -> None:
    (env.policies / "translate.yaml").write_text(OTHER.replace("path_prefix: /translate", "path_prefx: /t"))
    response = await env.client.put("/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 100}})
    assert response.status_code == 409
    assert any("path_prefx" in e and "unknown field" in e for e in response.json()["errors"])
    assert env.file.read_text() == POLICY


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "method", "path", "body", "status"),
    [
        (None, "GET", "/v1/models", None, 401),
        ("wrong-token-0123456789", "GET", "/v1/models", None, 401),
        (None, "GET", "/v1/status", None, 401),
        (None, "GET", "/metrics", None, 401),
        (None, "PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": 100}}, 401),
        (None, "PUT", "/v1/models/sentiment/traffic", "{not json", 401),
        (READER, "GET", "/v1/models", None, 200),
        (READER, "GET", "/v1/envoys", None, 200),
        (READER, "GET", "/v1/audit", None, 200),
        (READER, "GET", "/metrics", None, 200),
        (
            READER,
            "POST",
            "/v1/validate",
            {"change": {"action": "shift", "model": "sentiment", "weights": {"sentiment-v3": 100}}},
            200,
        ),
        # Readers may validate; this proposal is answered 409 (no history to roll back to), not 403.
        (READER, "POST", "/v1/validate", {"change": {"action": "rollback", "model": "sentiment"}}, 409),
        (READER, "PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": 100}}, 403),
        (READER, "PUT", "/v1/models/sentiment/traffic", "{not json", 403),
        (READER, "PUT", "/v1/models/sentiment/shadow", {"version": "sentiment-v5"}, 403),
        (READER, "DELETE", "/v1/models/sentiment/shadow", None, 403),
        (READER, "POST", "/v1/models/sentiment/promote", {"version": "sentiment-v4"}, 403),
        (READER, "POST", "/v1/models/sentiment/rollback", None, 403),
        (OPERATOR, "PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": 100}}, 200),
        (None, "GET", "/healthz", None, 200),
    ],
)
async def test_auth_matrix(env: Env, token: str | None, method: str, path: str, body: Any, status: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, str) else None
    payload = None if isinstance(body, str) else body
    transport = httpx.ASGITransport(app=env.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        response = await client.request(
            method, path, headers={**headers, "content-type": "application/json"}, json=payload, content=content
        )
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer" and "token" in response.json()["message"]
    if status == 403:
        assert "reader role" in response.json()["message"]
        assert env.audit()[-1]["who"] == "rita" and not env.audit()[-1]["accepted"]
    if status >= 400:
        assert env.file.read_text() == POLICY


# -- bad input: 4xx with a message, never 500, nothing changes ----------------------------------

BAD = [
    ("PUT", "/v1/models/sentiment/traffic", "{", 400, "malformed JSON"),
    ("PUT", "/v1/models/sentiment/traffic", "", 422, "body"),
    ("PUT", "/v1/models/sentiment/traffic", "[]", 422, "body"),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {}}, 422, "weights"),
    (
        "PUT",
        "/v1/models/sentiment/traffic",
        {"weights": {"sentiment-v3": 60, "sentiment-v4": 30}},
        422,
        "sum to 100 (got 90)",
    ),
    (
        "PUT",
        "/v1/models/sentiment/traffic",
        {"weights": {"sentiment-v3": 110, "sentiment-v4": -10}},
        422,
        "less than or equal",
    ),
    (
        "PUT",
        "/v1/models/sentiment/traffic",
        {"weights": {"sentiment-v3": 50.5, "sentiment-v4": 49.5}},
        422,
        "valid integer",
    ),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": "100"}}, 422, "valid integer"),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": True}}, 422, "valid integer"),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v9": 100}}, 422, "no version 'sentiment-v9'"),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": 100}, "extra": 1}, 422, "extra"),
    ("PUT", "/v1/models/nope/traffic", {"weights": {"v1": 100}}, 404, "no model named 'nope'"),
    ("PUT", "/v1/models/sentiment/shadow", {"version": "sentiment-v5", "percent": 0}, 422, "greater than 0"),
    (
        "PUT",
        "/v1/models/sentiment/shadow",
        {"version": "sentiment-v5", "percent": 101},
        422,
        "less than or equal to 100",
    ),
    ("PUT", "/v1/models/sentiment/shadow", {"version": "sentiment-v5", "percent": "50"}, 422, "valid number"),
    ("PUT", "/v1/models/sentiment/shadow", {"version": "", "percent": 5}, 422, "at least 1"),
    ("PUT", "/v1/models/sentiment/shadow", {"percent": 5}, 422, "version"),
    ("POST", "/v1/models/sentiment/promote", {"version": "sentiment-v9"}, 422, "no version"),
    ("POST", "/v1/models/sentiment/promote", {"version": 4}, 422, "valid string"),
    ("DELETE", "/v1/models/sentiment/shadow?version=sentiment-v9", None, 422, "no version"),
    ("GET", "/v1/audit?limit=0", None, 422, "limit"),
    ("GET", "/v1/audit?limit=abc", None, 422, "limit"),
    ("POST", "/v1/validate", {}, 422, "exactly one"),
    ("POST", "/v1/validate", {"change": {"action": "explode", "model": "sentiment"}}, 422, "action"),
    ("PATCH", "/v1/models/sentiment/traffic", None, 405, "PATCH is not allowed here; use PUT"),
    ("GET", "/v1/nothing-here", None, 404, "Not Found"),
    ("PUT", "/v1/models/sentiment/traffic", {"weights": {"sentiment-v3": 100}}, 412, "stale"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), BAD)
async def test_bad_input_is_4xx_with_a_message_and_changes_nothing(
    env: Env, method: str, path: str, body: Any, status: int, message: str
) -> None:
    headers = {"content-type": "application/json"}
    if status == 412:
        headers["If-Match"] = '"0000"'
    content = body if isinstance(body, str) else None
    response = await env.client.request(
        method, path, headers=headers, content=content, json=None if isinstance(body, str) else body
    )
    assert response.status_code == status, response.text
    assert message in response.json()["message"], response.json()
    assert env.file.read_text() == POLICY
    if method in ("PUT", "POST", "DELETE") and path.startswith("/v1/models/"):
        (record,) = env.audit()
        # The audit log names the kind of refusal; the HTTP status is the API's business.
        kinds = {
            400: "malformed",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            412: "stale",
            422: "invalid",
        }
        assert not record["accepted"] and record["error"] == kinds[status] and record["reason"]


async def test_fuzz_against_the_openapi_schema_never_500_and_rejections_change_nothing(env: Env) -> None:
    """Random, mostly-wrong requests for every operation in our own OpenAPI schema."""
    schema = (await env.client.get("/openapi.json")).json()
    rng = random.Random(4)
    names = ["sentiment", "translate", "nope", "", "%2e%2e", "x" * 300, "sentiment/../x"]
    versions = ["sentiment-v3", "sentiment-v4", "sentiment-v5", "en-de-1", "zz", "", "💥"]

    def value(depth: int = 0) -> Any:
        kinds = ["int", "float", "str", "bool", "null", "version", "weights"] + (["list", "dict"] if depth < 2 else [])
        kind = rng.choice(kinds)
        if kind == "int":
            return rng.choice([0, 1, 50, 100, 101, -1, 2**64])
        if kind == "float":
            return rng.choice([0.5, 50.0, 1e308, -0.0, 100.0])
        if kind == "str":
            return rng.choice(["", "a", "100", "null", "x" * 2000])
        if kind == "bool":
            return rng.choice([True, False])
        if kind == "version":
            return rng.choice(versions)
        if kind == "weights":
            picked = rng.sample(versions, rng.randint(0, 3))
            return {v: rng.choice([0, 10, 50, 90, 100, -5, 1.5]) for v in picked}
        if kind == "list":
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        if kind == "null":
            return None
        keys = ["weights", "version", "percent", "action", "model", "policy", "change", "file", "extra"]
        return {k: value(depth + 1) for k in rng.sample(keys, rng.randint(0, 4))}

    operations = [(path, method.upper()) for path, ops in schema["paths"].items() for method in ops]
    assert len(operations) >= 12
    sent = 0
    for _ in range(25):
        for path, method in operations:
            url = path.replace("{name}", rng.choice(names))
            params = {k: value() for k in rng.sample(["version", "model", "limit"], rng.randint(0, 2))}
            params = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()}
            body = value()
            if isinstance(body, dict) and rng.random() < 0.3 and method in ("PUT", "POST"):
                body = (
                    {"weights": value()} if "traffic" in url else {"version": rng.choice(versions), "percent": value()}
                )
            text = env.file.read_text()
            response = await env.client.request(
                method,
                url,
                params=params,
                content=json.dumps(body) if rng.random() < 0.9 else "{bad json",
                headers={"content-type": "application/json", "If-Match": rng.choice(["*", '"stale"'])},
            )
            sent += 1
            assert response.status_code < 500, (method, url, body, response.text)
            if response.status_code >= 400:
                assert response.json()["message"], response.text
                assert env.file.read_text() == text, (method, url, body)
    assert sent >= 300


# -- validate, envoys, metrics ------------------------------------------------------------------


async def test_validate_a_change_diffs_envoy_resources_and_applies_nothing(env: Env) -> None:
    before = env.cache.current.version  # type: ignore[union-attr]
    body = {"change": {"action": "shift", "model": "sentiment", "weights": {"sentiment-v3": 50, "sentiment-v4": 50}}}
    result = (await env.client.post("/v1/validate", json=body)).json()
    assert result["valid"] is True
    (change,) = result["diff"]
    assert change["type"] == "RouteConfiguration" and change["op"] == "changed"
    # Indentation-agnostic: how deep the routes sit depends on the route layout (plain or matcher).
    lines = [line.replace(" ", "") for line in change["diff"].splitlines()]
    assert '-"weight":90' in lines and '+"weight":50' in lines
    assert env.file.read_text() == POLICY and env.cache.current.version == before  # type: ignore[union-attr]
    assert env.audit() == []  # a dry run is not a change
    bad = {"change": {"action": "shift", "model": "sentiment", "weights": {"sentiment-v3": 50}}}
    result = (await env.client.post("/v1/validate", json=bad)).json()
    assert result["valid"] is False and "sum to 100 (got 50)" in result["message"]


async def test_validate_a_policy_document(env: Env) -> None:
    broken = POLICY.replace("timeout: 5s", "timeout: 5s\n  retries: {attempts: 2, onn: [reset]}")
    result = (await env.client.post("/v1/validate", json={"policy": broken, "file": "sentiment.yaml"})).json()
    assert result["valid"] is False
    assert any("spec.retries.onn: unknown field" in e for e in result["errors"]), result
    edited = POLICY.replace("sentiment-v3: 90, sentiment-v4: 10", "sentiment-v4: 100")
    result = (await env.client.post("/v1/validate", json={"policy": edited, "file": "sentiment.yaml"})).json()
    assert result["valid"] is True and [d["type"] for d in result["diff"]] == ["RouteConfiguration"]
    added = OTHER.replace("translate", "summarize")
    result = (await env.client.post("/v1/validate", json={"policy": added})).json()
    assert result["valid"] is True
    assert {(d["type"], d["op"]) for d in result["diff"]} >= {("Cluster", "added"), ("RouteConfiguration", "changed")}
    unknown = (await env.client.post("/v1/validate", json={"policy": added, "file": "nope.yaml"})).json()
    assert unknown["valid"] is False and "not one of the policy files" in unknown["message"]
    assert env.file.read_text() == POLICY


async def test_envoys_and_metrics(env: Env) -> None:
    envoys = (await env.client.get("/v1/envoys")).json()
    assert envoys == {"snapshot_version": env.cache.current.version, "envoys": []}  # type: ignore[union-attr]
    await env.client.put("/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 100}})
    await env.client.put("/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 1}})
    text = (await env.client.get("/metrics")).text
    assert 'switchyard_admin_changes_total{action="shift",result="accepted"} 1.0' in text
    assert 'switchyard_admin_changes_total{action="shift",result="rejected"} 1.0' in text
    assert "switchyard_envoys_connected 0.0" in text
    assert "switchyard_convergence_seconds_bucket" in text
    assert "switchyard_snapshots_published_total 2.0" in text


async def test_rollout_verbs_are_audited_like_every_change_accepted_or_refused(env: Env) -> None:
    # Refused by the runner (no canary block): audited with the action the route names.
    refused = await env.client.post("/v1/models/sentiment/rollout/start")
    assert refused.status_code == 409 and "no canary block" in refused.json()["message"]
    # Refused before the handler ran (a reader's token): audited too, with the same action name.
    reader = await env.client.post("/v1/models/sentiment/rollout/pause", headers={"Authorization": f"Bearer {READER}"})
    assert reader.status_code == 403
    records = [(r["who"], r["action"], r["outcome"], r["error"]) for r in env.audit()]
    assert records == [
        ("olga", "rollout-start", "rejected", "conflict"),
        ("rita", "rollout-pause", "rejected", "forbidden"),
    ]
