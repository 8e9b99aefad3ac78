"""The CLI's outputs: validate's exit codes, render's resources, and a bootstrap Envoy accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from control_plane.cli.main import main
from control_plane.xds.envoy_binary import envoy_binary

DATA = Path(__file__).parent / "testdata" / "in"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DATA / "canary.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_validate_reports_one_line_per_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (DATA / "canary.yaml")
        .read_text()
        .replace("sentiment-v4: 10}", "sentiment-v4: 20}")
        .replace("timeout: 5s", "timeout: 5")
    )
    assert main(["validate", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    # Every independent error in one run, in the order of the file: the schema error and
    # the cross-field one, which does not follow from it.
    assert lines == [
        f"{bad}:13: spec.traffic: weights must sum to 100 (got 110)",
        f"{bad}:23: spec.timeout: bad duration 5: write a number with a unit, e.g. 250ms, 5s, 1m, 1h",
    ]
    bad.write_text(bad.read_text().replace("timeout: 5\n", "timeout: 5s\n"))
    assert main(["validate", str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{bad}:13: spec.traffic: weights must sum to 100 (got 110)"]


def test_render_groups_resources_by_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(DATA / "canary.yaml"), "--format", "json"]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert list(rendered) == ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]
    assert [c["name"] for c in rendered["Cluster"]] == [
        "sentiment/sentiment-v3",
        "sentiment/sentiment-v4",
        "sentiment/sentiment-v4-large",
        "sentiment/sentiment-v5",
    ]


def test_render_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(DATA / "dns-endpoints.yaml")]) == 0
    rendered = yaml.safe_load(capsys.readouterr().out)
    assert rendered["Cluster"][0]["type"] == "STRICT_DNS"


@pytest.mark.parametrize("delta", [False, True])
def test_bootstrap_is_accepted_by_envoy(delta: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bootstrap", "--xds", "control-plane:18000", "--admin-port", "9901", "--node-id", "edge-1"]
    assert main(args + (["--delta"] if delta else [])) == 0
    text = capsys.readouterr().out
    config = yaml.safe_load(text)
    assert config["node"]["id"] == "edge-1"
    assert config["dynamic_resources"]["ads_config"]["api_type"] == ("DELTA_GRPC" if delta else "GRPC")
    path = tmp_path / "bootstrap.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
