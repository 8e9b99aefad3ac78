"""Routing through a real Envoy configured by the real control plane, in both ADS modes."""

from __future__ import annotations

import json

import pytest

from tests.support.procs import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

PROD = {"sentiment-v3", "sentiment-v4"}


def versions(counts: dict[tuple[int, str | None], int]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for (status, version), n in counts.items():
        assert status == 200, counts
        out[version] = out.get(version, 0) + n
    return out


def test_split_90_10_within_3_points(stack: Stack) -> None:
    stack.apply(stack.policy(traffic="{sentiment-v3: 90, sentiment-v4: 10}", spec_extra="timeout: 5s"))
    got = versions(stack.send(2000))
    assert set(got) == PROD
    assert abs(got["sentiment-v4"] / 2000 * 100 - 10) <= 3, got


def test_zero_weight_version_gets_nothing(stack: Stack) -> None:
    stack.apply(stack.policy(traffic="{sentiment-v3: 100, sentiment-v4: 0}"))
    stack.reset_counts()
    got = versions(stack.send(300))
    assert got == {"sentiment-v3": 300}
    assert stack.upstreams["sentiment-v4"].count() == 0


def test_header_and_content_length_rules(stack: Stack) -> None:
    stack.apply(
        stack.policy(
            spec_extra="""
            rules:
              - name: premium
                match: {headers: {x-user-tier: premium}}
                traffic: {sentiment-v4-large: 100}
              - name: long-inputs
                match: {min_content_length: 4096}
                traffic: {sentiment-v5: 100}
              - name: beta-clients
                match: {headers: {x-client: {prefix: beta-}, x-debug: {absent: true}}}
                traffic: {sentiment-v4: 100}
            """
        )
    )
    premium = versions(stack.send(50, headers={"x-user-tier": "premium"}))
    assert premium == {"sentiment-v4-large": 50}
    long_text = {"text": "great " * 1000}
    assert versions(stack.send(20, json=long_text)) == {"sentiment-v5": 20}
    assert versions(stack.send(20, headers={"x-client": "beta-7"})) == {"sentiment-v4": 20}
    # absent: the same client with x-debug set falls through to the default split
    assert set(versions(stack.send(100, headers={"x-client": "beta-7", "x-debug": "1"}))) <= PROD
    assert set(versions(stack.send(100, headers={"x-user-tier": "free"}))) <= PROD


def test_header_and_body_pinning(stack: Stack) -> None:
    stack.apply(
        stack.policy(
            traffic="{sentiment-v3: 100}",
            spec_extra="pinning: {header: x-model-version, body_field: model_version}",
        )
    )
    for version in ("sentiment-v4", "sentiment-v5", "sentiment-v3"):
        assert versions(stack.send(10, headers={"x-model-version": version})) == {version: 10}
        body = {"text": "This product is terrible", "model_version": version}
        assert versions(stack.send(10, json=body)) == {version: 10}
        # The same body as tritonclient sends it (no Content-Type) and as curl -d does (a form type).
        raw = json.dumps(body).encode()
        assert versions(stack.send(5, content=raw)) == {version: 5}
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert versions(stack.send(5, content=raw, headers=form)) == {version: 5}
    unknown = stack.one(headers={"x-model-version": "sentiment-v9"})
    assert unknown.status_code == 404
    assert "sentiment-v9" not in unknown.text and "known versions" in unknown.json()["error"]
    assert stack.one(json={"text": "x", "model_version": "nope"}).status_code == 404


def test_open_inference_protocol_versioned_paths_reach_that_version(stack: Stack) -> None:
    stack.apply(stack.policy(traffic="{sentiment-v3: 90, sentiment-v4: 10}"))
    for version in ("sentiment-v4", "sentiment-v5", "sentiment-v3"):
        base = f"/v2/models/sentiment/versions/{version}"
        for path in (f"{base}/infer", f"{base}/infer?x=1", f"{base}/ready", base):
            for _ in range(5):
                response = stack.client.post(path, json={"inputs": []})
                assert response.status_code == 200 and response.headers["x-model-version"] == version, path
                assert response.json()["path"] == path  # the model service sees the path unchanged
    # Not a version path: the version segment must end where the name does.
    near = stack.client.post("/v2/models/sentiment/versions/sentiment-v4x/infer", json={})
    assert near.status_code == 404 and "known versions: sentiment-v3, sentiment-v4" in near.json()["error"]
    unknown = stack.client.get("/v2/models/sentiment/versions/sentiment-v9/ready")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    # Without a version the path follows the split.
    got: dict[str | None, int] = {}
    for _ in range(200):
        response = stack.client.post("/v2/models/sentiment/infer", json={"inputs": []})
        got[response.headers.get("x-model-version")] = got.get(response.headers.get("x-model-version"), 0) + 1
    assert set(got) == PROD and got["sentiment-v3"] > got["sentiment-v4"], got
    # Another model's versioned path is not this model's pin.
    other = stack.client.post("/v2/models/other/versions/sentiment-v5/infer", json={})
    assert other.headers["x-model-version"] in PROD


def test_mirroring_reaches_shadow_at_percent_and_client_sees_production(stack: Stack) -> None:
    stack.apply(stack.policy(spec_extra="shadow: [{version: sentiment-v5, percent: 50}]"))
    stack.reset_counts()
    got = versions(stack.send(1000))
    assert set(got) == PROD  # never the shadow's answer
    mirrored = stack.wait_shadow("sentiment-v5", at_least=400)
    assert 0.45 <= mirrored / 1000 <= 0.55, mirrored
    assert stack.upstreams["sentiment-v5"].count("live") == 0


def test_shadow_errors_never_reach_client(stack: Stack) -> None:
    stack.apply(stack.policy(spec_extra="shadow: [{version: sentiment-v5, percent: 100}]"))
    stack.upstreams["sentiment-v5"].status = 500
    try:
        stack.reset_counts()
        assert set(versions(stack.send(200))) <= PROD
        assert stack.wait_shadow("sentiment-v5", at_least=200) == 200
    finally:
        stack.upstreams["sentiment-v5"].status = 200


def test_editing_the_file_moves_the_split(stack: Stack) -> None:
    stack.apply(stack.policy(traffic="{sentiment-v3: 100}"))
    assert versions(stack.send(50)) == {"sentiment-v3": 50}
    stack.apply(stack.policy(traffic="{sentiment-v4: 100}"))
    assert versions(stack.send(50)) == {"sentiment-v4": 50}


def test_invalid_edit_changes_nothing(stack: Stack) -> None:
    good = stack.apply(stack.policy(traffic="{sentiment-v3: 100}"))
    bad = stack.policy(traffic="{sentiment-v3: 60, sentiment-v4: 30}")  # sums to 90
    stack.write(bad)

    def rejected() -> dict[str, object] | None:
        status = stack.control_plane.status()
        last = status["policy"]["last_rejected"]
        return status if last and not last["accepted"] and last["at"] > good["published_at"] else None

    status = wait_for(rejected, what="the invalid edit to be rejected")
    errors = status["policy"]["last_rejected"]["errors"]
    assert any("sentiment.yaml" in e and "spec.traffic: weights must sum to 100 (got 90)" in e for e in errors), errors
    assert status["snapshot_version"] == good["snapshot_version"]
    assert versions(stack.send(50)) == {"sentiment-v3": 50}
    # and the next good edit is picked up again
    stack.apply(stack.policy(traffic="{sentiment-v4: 100}"))
    assert versions(stack.send(20)) == {"sentiment-v4": 20}


def test_version_without_ready_endpoint_gets_no_weight(stack: Stack) -> None:
    stack.apply(stack.policy(traffic="{sentiment-v3: 50, sentiment-v4: 50}"))
    v4 = stack.upstreams["sentiment-v4"]
    v4.ready = False
    try:
        status = wait_for(
            lambda: (s := stack.control_plane.status())["models"][0]["effective_traffic"] == {"sentiment-v3": 50} and s,
            what="v4's weight to be withdrawn",
        )
        stack.wait_synced(status["snapshot_version"])
        model = status["models"][0]
        assert [v["ready"] for v in model["versions"] if v["name"] == "sentiment-v4"] == [False]
        assert model["traffic"] == {"sentiment-v3": 50, "sentiment-v4": 50}
        assert versions(stack.send(200)) == {"sentiment-v3": 200}
    finally:
        v4.ready = True
    wait_for(
        lambda: (
            stack.control_plane.status()["models"][0]["effective_traffic"] == {"sentiment-v3": 50, "sentiment-v4": 50}
        ),
        what="v4's weight to return",
    )
    stack.wait_synced()
    assert set(versions(stack.send(200))) == PROD


def test_zero_errors_while_split_is_edited_20_times(stack: Stack) -> None:
    import threading

    stack.apply(stack.policy(traffic="{sentiment-v3: 100, sentiment-v4: 0}"))
    steps = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    stop = threading.Event()
    results: dict[tuple[int, str | None], int] = {}

    def traffic() -> None:
        import httpx

        with httpx.Client(base_url=stack.url, timeout=10) as client:
            while not stop.is_set():
                response = client.post("/v1/predict", json={"text": "x"})
                key = (response.status_code, response.headers.get("x-model-version"))
                results[key] = results.get(key, 0) + 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        for v4 in steps[1:]:
            stack.apply(stack.policy(traffic=f"{{sentiment-v3: {100 - v4}, sentiment-v4: {v4}}}"))
    finally:
        stop.set()
        worker.join(timeout=30)
    assert sum(results.values()) > 100
    assert all(status == 200 for status, _ in results), results
    assert {v for _, v in results} == PROD
