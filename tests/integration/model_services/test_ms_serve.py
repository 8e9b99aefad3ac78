"""Both example versions served by real processes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TEXTS = [
    "This product is terrible",
    "The sound of this speaker is not bad at all",
    "Five stars, the delivery is superb.",
    "Looks nice but it stopped working after a week.",
    "I regret buying this kettle",
    "Honestly, the laptop exceeded my expectations",
    "meh",
    "The build quality is awful but the support team is wonderful.",
]


@pytest.mark.parametrize("version", ["sentiment-v3", "sentiment-v4"])
async def test_version_serves_v1_and_v2(
    model_store: Path, tmp_path: Path, serve: Callable[..., Any], version: str
) -> None:
    with serve(model_store / "sentiment" / version, tmp_path / "log") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            r = await client.post(
                "/v1/predict",
                json={"text": "This product is terrible", "model_version": version},
                headers={"x-request-id": "it-1"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["label"] == "negative"
            assert r.json()["model_version"] == version
            assert (r.headers["x-model-version"], r.headers["x-request-id"]) == (version, "it-1")

            # Server-side batching: concurrent single requests equal one batch request,
            # which equals the v2 protocol's answer.
            singles = await asyncio.gather(*(client.post("/v1/predict", json={"text": t}) for t in TEXTS))
            batch = (await client.post("/v1/predict/batch", json={"texts": TEXTS})).json()
            v2 = await client.post(
                f"/v2/models/sentiment/versions/{version}/infer",
                json={"inputs": [{"name": "text", "shape": [8], "datatype": "BYTES", "data": TEXTS}]},
            )
            assert v2.status_code == 200
            outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
            for i, single in enumerate(singles):
                one = single.json()
                assert one["label"] == batch["predictions"][i]["label"] == outputs["label"][i]
                assert one["confidence"] == pytest.approx(batch["predictions"][i]["confidence"], abs=1e-5)
                assert one["confidence"] == pytest.approx(outputs["confidence"][i], abs=1e-5)

            metrics = (await client.get("/metrics")).text
            assert 'model_batch_size_count{model="sentiment",version="' + version in metrics


def test_served_version_renames(model_store: Path, tmp_path: Path, serve: Callable[..., Any]) -> None:
    model_dir = model_store / "sentiment" / "sentiment-v3"
    with serve(model_dir, tmp_path / "log", "--served-version", "sentiment-v5") as server:
        r = httpx.post(server.url + "/v1/predict", json={"text": "great"}, timeout=30)
        assert r.json()["model_version"] == "sentiment-v5"
        assert r.headers["x-model-version"] == "sentiment-v5"


def test_tampered_weights_never_serve(model_store: Path, tmp_path: Path, spawn_server: Callable[..., Any]) -> None:
    bad = tmp_path / "sentiment" / "sentiment-v3"
    shutil.copytree(model_store / "sentiment" / "sentiment-v3", bad)
    with (bad / "weights.safetensors").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    server = spawn_server(bad, tmp_path / "log")
    assert server.wait(120) == 1
    assert "hash mismatch for 'weights.safetensors'" in server.output()


def test_missing_dir_is_a_usage_error(tmp_path: Path, spawn_server: Callable[..., Any]) -> None:
    server = spawn_server(tmp_path / "nothing", tmp_path / "log")
    assert server.wait(60) == 2
    assert "no manifest" in server.output()


def test_build_cli_one_version(tmp_path: Path, repo_root: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "model_services", "build", "--out", str(tmp_path), "--only", "sentiment-v3"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    assert "| sentiment-v3 |" in out
    assert (tmp_path / "sentiment" / "sentiment-v3" / "manifest.json").is_file()
    assert not (tmp_path / "sentiment" / "sentiment-v4").exists()
