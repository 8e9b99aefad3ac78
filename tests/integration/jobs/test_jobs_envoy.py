"""Jobs go through Envoy like predictions: the routing policy picks the version
that serves a job, and any replica answers its polls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.jobs.helpers import RedisServer, Services, wait_job
from tests.support.procs import ControlPlane, Envoy, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def envoy_url(tmp_path: Path, redis_server: RedisServer, services: Services, v3_dir: Path) -> Iterator[str]:
    # One trained model behind two version names, as in the demos.
    v3 = services.spawn(v3_dir, redis_server.url, "--served-version", "sentiment-v3", ready=False)
    v4 = services.spawn(v3_dir, redis_server.url, "--served-version", "sentiment-v4", ready=False)
    v3.wait_ready()
    v4.wait_ready()
    listener = free_port()
    policies = tmp_path / "policies"
    policies.mkdir()
    endpoints = {name: s.url.removeprefix("http://") for name, s in (("sentiment-v3", v3), ("sentiment-v4", v4))}
    (policies / "sentiment.yaml").write_text(
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gateway}\n"
        f"spec: {{address: 127.0.0.1, port: {listener}}}\n"
        "---\n"
        "apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {name: sentiment}\nspec:\n"
        "  versions:\n"
        + "".join(f'    {name}: {{endpoints: ["{address}"]}}\n' for name, address in endpoints.items())
        + "  traffic: {sentiment-v3: 100, sentiment-v4: 0}\n"
        "  pinning: {header: x-model-version, body_field: model_version}\n"
        "  health_check: {path: /v2/health/ready, interval: 200ms, unhealthy_threshold: 1}\n"
    )
    control_plane = ControlPlane(policies, tmp_path).start()
    envoy = Envoy(control_plane.xds_port, tmp_path).start()
    url = f"http://127.0.0.1:{listener}"
    try:
        pinned = {"x-model-version": "sentiment-v4"}
        wait_for(
            lambda: httpx.post(url + "/v1/predict", json={"text": "hi"}, headers=pinned).status_code == 200,
            what="Envoy to route to both versions",
        )
        yield url
    finally:
        envoy.stop()
        control_plane.stop()


def test_job_is_served_by_the_version_the_policy_picks(envoy_url: str) -> None:
    with httpx.Client(base_url=envoy_url, timeout=10) as client:
        by_split = client.post("/v1/jobs", json={"text": "great value"})
        by_header = client.post("/v1/jobs", json={"text": "great value"}, headers={"x-model-version": "sentiment-v4"})
        by_body = client.post("/v1/jobs", json={"text": "great value", "model_version": "sentiment-v4"})
        assert by_split.status_code == by_header.status_code == by_body.status_code == 202
        assert by_header.headers["x-model-version"] == "sentiment-v4"  # accepted by a v4 replica
        # Polls follow the default split (v3 replicas); the record is in Redis, so they answer.
        expected = {by_split: "sentiment-v3", by_header: "sentiment-v4", by_body: "sentiment-v4"}
        for response, version in expected.items():
            job = wait_job(client, response.json()["job_id"])
            assert job["status"] == "completed"
            assert job["model_version"] == version
            result = job["result"]
            assert isinstance(result, dict) and result["model_version"] == version
