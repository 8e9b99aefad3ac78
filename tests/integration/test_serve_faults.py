"""`switchyard serve` and `switchyard validate` against bad luck: kills, busy ports, hostile files."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from control_plane.operations.audit import AuditLog
from tests.support.procs import ControlPlane, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

POLICY = """\
# a comment that must survive every write-back
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  versions:
    sentiment-v3: {endpoints: ["127.0.0.1:9"]}   # v3
    sentiment-v4: {endpoints: ["127.0.0.1:10"]}  # v4
  traffic: {sentiment-v3: 90, sentiment-v4: 10}
"""
SPLITS = [{"sentiment-v3": w, "sentiment-v4": 100 - w} for w in (90, 70, 50, 30, 10)]


def file_split(path: Path) -> dict[str, int]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    split: dict[str, int] = doc["spec"]["traffic"]
    return split


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_sigkill_during_write_back_never_leaves_an_unaudited_change(tmp_path: Path) -> None:
    policies, state = tmp_path / "policies", tmp_path / "state"
    policies.mkdir()
    policy = policies / "sentiment.yaml"
    policy.write_text(POLICY)
    rng = random.Random(7)
    for round_ in range(20):
        cp = ControlPlane(policies, tmp_path, extra_args=["--state-dir", str(state)]).start()
        assert not list(policies.glob(".*.tmp")), "stale temporary files are removed at start-up"
        stop = threading.Event()

        def shift(url: str = cp.url, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=url, timeout=5) as client:
                while not stop.is_set():
                    try:
                        client.put("/v1/models/sentiment/traffic", json={"weights": rng.choice(SPLITS)})
                    except httpx.HTTPError:
                        return

        shifter = threading.Thread(target=shift, daemon=True)
        shifter.start()
        wait_for(lambda: AuditLog(state / "audit.jsonl").read(limit=1), what="a first change")
        if round_ % 2:  # at a random moment
            threading.Event().wait(rng.uniform(0.0, 0.25))
        else:  # the moment the write-back lands: between the rename and whatever follows it
            _wait_for_rename(policy)
        cp.stop(signal.SIGKILL)
        stop.set()
        shifter.join(10)
        # The file is whole, and its split is one the audit log accounts for.
        records = list(reversed(AuditLog(state / "audit.jsonl").read(limit=100_000)))
        current = file_split(policy)
        assert "# a comment that must survive every write-back" in policy.read_text()
        explained = _explanations(records)
        assert current in explained, (round_, current, records[-3:])
    leftover = list(policies.glob(".*.tmp"))
    ControlPlane(policies, tmp_path, extra_args=["--state-dir", str(state)]).start().stop()
    assert not list(policies.glob(".*.tmp")), leftover


def _wait_for_rename(path: Path, timeout: float = 10.0) -> None:
    """Spin until ``path`` is replaced (a new inode), to kill the writer right after."""
    inode = path.stat().st_ino
    deadline = time.monotonic() + timeout
    while path.stat().st_ino == inode and time.monotonic() < deadline:
        pass


def _explanations(records: list[dict[str, Any]]) -> list[dict[str, int]]:
    """The splits the file may hold: the last accepted change's, or an unfinished change's after it."""
    explained: list[dict[str, int]] = [{"sentiment-v3": 90, "sentiment-v4": 10}]
    for record in records:
        weights = (record.get("request") or {}).get("weights")
        if record["action"] != "shift" or weights is None:
            continue
        if record["outcome"] == "accepted":
            explained = [weights]
        elif record["outcome"] == "unknown":
            explained = [*explained, weights]
    return explained


def test_a_busy_port_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        admin = run("serve", "--policies", str(tmp_path), "--admin-port", str(port), "--xds-port", str(free_port()))
        xds = run("serve", "--policies", str(tmp_path), "--admin-port", str(free_port()), "--xds-port", str(port))
    assert admin.returncode == 2, admin.stderr
    assert f"cannot listen for the admin API on 127.0.0.1:{port}: Address already in use" in admin.stderr
    assert xds.returncode == 2, xds.stderr
    assert f"cannot listen for xDS on 127.0.0.1:{port}" in xds.stderr
    for result in (admin, xds):
        assert "Traceback" not in result.stderr
        # It says nothing it did not do.
        assert "admin API on http" not in result.stderr and "ADS) listening" not in result.stderr


HOSTILE = {
    "float-tag.yaml": ("timeout: !!float 'soon'", "spec.timeout: cannot read 'soon' as !!float"),
    "timestamp.yaml": ("timeout: !!timestamp 2001-13-45", "spec.timeout: cannot read '2001-13-45' as !!timestamp"),
    "loop.yaml": ("rules: &loop [*loop]", "recursive alias"),
    "bigint.yaml": ("outlier_detection: {consecutive_5xx: 4294967296}", "must be <= 4294967295"),
    "duration.yaml": ("timeout: 999999999999999999999h", "at most 9223372035s"),
    "regex.yaml": (
        "rules: [{name: r, match: {headers: {x-u: {regex: '(?<=beta)-user'}}}, traffic: {sentiment-v4: 100}}]",
        "invalid perl operator",
    ),
}


def _hostile_dir(root: Path) -> Path:
    root.mkdir()
    for i, (name, (line, _)) in enumerate(HOSTILE.items()):
        text = POLICY.replace("name: sentiment", f"name: m{i}").replace("spec:\n", f"spec:\n  path_prefix: /m{i}\n")
        (root / name).write_text(text + "  " + line + "\n")
    return root


def test_validate_reports_every_hostile_file_in_one_run(tmp_path: Path) -> None:
    result = run("validate", str(_hostile_dir(tmp_path / "policies")))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name, (_, expected) in HOSTILE.items():
        assert any(line.startswith(str(tmp_path / "policies" / name) + ":") and expected in line for line in lines), (
            name,
            lines,
        )


def test_serve_starts_on_hostile_files_reports_them_and_picks_up_the_fix(tmp_path: Path) -> None:
    policies = _hostile_dir(tmp_path / "policies")
    cp = ControlPlane(policies, tmp_path).start()
    try:
        status = cp.status()
        assert status["policy"]["last_rejected"] is not None
        errors = "\n".join(status["policy"]["last_rejected"]["errors"])
        for _, expected in HOSTILE.values():
            assert expected in errors
        for name in HOSTILE:
            (policies / name).unlink()
        (policies / "good.yaml").write_text(POLICY)
        wait_for(lambda: cp.status()["policy"]["last_reload"]["accepted"], what="the fixed policies")
        assert [m["name"] for m in cp.status()["models"]] == ["sentiment"]
        body = {"policy": POLICY.replace("timeout", "x") + "  timeout: !!float 'soon'\n", "file": "good.yaml"}
        answer = httpx.post(f"{cp.url}/v1/validate", json=body, timeout=10)
        assert answer.status_code == 422 and "cannot read 'soon' as !!float" in json.dumps(answer.json())
    finally:
        cp.stop()
    assert cp.process is not None
    assert "Traceback" not in cp.process.log()
