"""`switchyard up` on the shipped policies: real predictions, crash recovery, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import yaml

from tests.support.procs import free_port, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (``/proc``, Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def switchyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_up_runs_the_system_recovers_a_replica_and_stops_cleanly(tmp_path: Path, model_store: Path) -> None:
    policies = tmp_path / "policies"  # a copy: the test shifts traffic, which writes the file back
    shutil.copytree(REPO / "policies", policies)
    state = tmp_path / "state"
    port, admin_port = free_port(), free_port()
    log = tmp_path / "up.log"
    args = [
        sys.executable, "-m", "control_plane", "up",
        "--policies", str(policies),
        "--state-dir", str(state),
        "--model-store", str(model_store),
        "--port", str(port),
        "--xds-port", str(free_port()),
        "--admin-port", str(admin_port),
        "--envoy-admin-port", str(free_port()),
    ]  # fmt: skip
    with log.open("wb") as out:
        # Started as a script's background job is: with SIGINT ignored, which `up` must undo.
        up = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:

        def ready() -> bool:
            assert up.poll() is None, f"`switchyard up` exited early:\n{log.read_text()[-3000:]}"
            return "everything is ready" in log.read_text()

        wait_for(ready, timeout=300, what="`switchyard up` to be ready")
        url = f"http://127.0.0.1:{port}/v1/predict"

        response = httpx.post(url, json={"text": "This product is terrible"}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] in {"negative", "positive"}
        assert 0.0 <= body["confidence"] <= 1.0
        assert body["model_version"] in {"sentiment-v3", "sentiment-v4"}
        premium = httpx.post(url, json={"text": "great"}, headers={"x-user-tier": "premium"}, timeout=10)
        assert premium.json()["model_version"] == "sentiment-v4-large"
        pinned = httpx.post(url, json={"text": "great", "model_version": "sentiment-v5"}, timeout=10)
        assert pinned.json()["model_version"] == "sentiment-v5"
        # The same listener answers the Triton gRPC client, by the same policy.
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            text = triton_grpc.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array([b"This product is terrible"], dtype=np.object_))
            answer = grpc_client.infer("sentiment", [text]).get_response()
            assert answer.model_version in {"sentiment-v3", "sentiment-v4"}
            premium_call = grpc_client.infer("sentiment", [text], headers={"x-user-tier": "premium"})
            assert premium_call.get_response().model_version == "sentiment-v4-large"
            assert grpc_client.infer(
                "sentiment", [text], model_version="sentiment-v5"
            ).get_response().model_version == ("sentiment-v5")
        finally:
            grpc_client.close()

        # `traffic` shows where requests go, and a `shift` taking effect.
        target = f"http://127.0.0.1:{port}"
        before = switchyard("traffic", "--url", target, "--rps", "25", "--duration", "3", "--pin", "")
        assert before.returncode == 0, before.stderr
        assert "sentiment-v3" in before.stdout
        assert "sentiment-v4-large" in before.stdout  # premium users and long inputs
        admin = f"http://127.0.0.1:{admin_port}"
        shifted = switchyard("shift", "sentiment", "sentiment-v3=0", "sentiment-v4=100", "--url", admin)
        assert shifted.returncode == 0, shifted.stderr
        assert "sentiment-v4: 100" in (policies / "sentiment.yaml").read_text()
        after = switchyard("traffic", "--url", target, "--rps", "25", "--duration", "3", "--pin", "")
        plain_versions = {line.split()[0] for line in after.stdout.splitlines() if line.startswith("sentiment-")}
        assert plain_versions <= {"sentiment-v4", "sentiment-v4-large"}, after.stdout

        # Kill one replica: `up` reports it and starts it again on the same port.
        overrides = yaml.safe_load((state / "overrides.yaml").read_text())
        victim = overrides["endpoints"]["sentiment"]["sentiment-v3"][0]
        victim_port = victim.rsplit(":", 1)[1]
        [pid] = processes_mentioning(f"--port {victim_port} ")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "restarted" in log.read_text(), timeout=60, what="the replica restart to be reported")
        wait_for(
            lambda: httpx.get(f"http://{victim}/v2/health/ready", timeout=2).status_code == 200,
            timeout=120,
            what="the restarted replica to be ready",
        )
        assert processes_mentioning(f"--port {victim_port} ") != [pid]
        assert httpx.post(url, json={"text": "fine"}, timeout=10).status_code == 200
    finally:
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()  # its children follow (they die with their parent)
            up.wait()
            raise AssertionError(f"`switchyard up` ignored SIGINT:\n{log.read_text()[-3000:]}") from None
    assert code == 0, log.read_text()[-3000:]
    assert "no process left behind" in log.read_text()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(state)) == []  # control plane, Envoy
    assert processes_mentioning(str(model_store)) == []  # every replica
