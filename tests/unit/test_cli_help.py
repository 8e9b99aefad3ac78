"""The CLI explains itself: help for every command and argument, errors in its own terms, once."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest
import yaml

from control_plane.cli import main as cli
from control_plane.cli.client import AdminError
from control_plane.cli.common import describe_error
from control_plane.local import traffic
from control_plane.local.up import reload_lines


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_description_examples_and_help_for_every_argument() -> None:
    commands = subcommands()
    assert {"up", "traffic", "validate", "status", "shift", "shadow", "rollout", "jobs", "serve"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 20, name
        assert parser.epilog and parser.epilog.startswith("examples:\n  switchyard "), name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"switchyard {name}: {'/'.join(action.option_strings) or action.dest} has no help"


def test_top_level_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "routes traffic between versions of ML models" in out and "switchyard up" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("switchyard ")


def test_api_field_names_become_the_flags_the_user_typed_and_print_once() -> None:
    exc = AdminError(
        "invalid request: body.percent: Input should be greater than 0",
        422,
        ["body.percent: Input should be greater than 0"],
    )
    flags = {"body.percent": "--percent", "body.weights": "{rest}=PCT"}
    assert describe_error("shadow", exc, flags) == "switchyard shadow: --percent: Input should be greater than 0"
    weights = AdminError("invalid request: body.weights.v4: must be <= 100", 422, ["body.weights.v4: must be <= 100"])
    assert describe_error("shift", weights, flags) == "switchyard shift: v4=PCT: must be <= 100"
    detailed = AdminError("the change was rejected by policy validation", 422, ["p.yaml:9: spec.traffic: bad"])
    assert describe_error("shift", detailed, {}).splitlines() == [
        "switchyard shift: the change was rejected by policy validation",
        "  p.yaml:9: spec.traffic: bad",
    ]


def test_an_unreachable_api_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("switchyard status: cannot reach the admin API at http://127.0.0.1:1")
    assert "Start it with `switchyard up`" in err and "--url URL or SWITCHYARD_URL" in err


MODELS = {
    "snapshot_version": "abc",
    "policy": {
        "files_valid": False,
        "last_rejected": {
            "at": 0.0,
            "errors": ["policies/sentiment.yaml:9: spec.traffic: weights must sum to 100 (got 110)"],
        },
    },
    "models": [
        {
            "name": "sentiment",
            "traffic": {"v3": 90, "v4": 10},
            "effective_traffic": {"v3": 90, "v4": 10},
            "shadow": [],
            "rules": [],
            "file": "policies/sentiment.yaml",
            "line": 1,
            "versions": [
                {
                    "name": "v3",
                    "ready": True,
                    "endpoints": [{"address": "127.0.0.1:1", "ready": True, "last_error": None}],
                },
                {
                    "name": "v4",
                    "ready": False,
                    "endpoints": [{"address": "127.0.0.1:2", "ready": False, "last_error": "HTTP 503"}],
                },
            ],
        }
    ],
}


def serve_models(monkeypatch: pytest.MonkeyPatch) -> None:
    real = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=MODELS)), **kwargs)

    monkeypatch.setattr("control_plane.cli.client.httpx.Client", client)


def test_status_warns_when_the_files_on_disk_were_rejected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_models(monkeypatch)
    assert cli.main(["status", "--url", "http://admin.test"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("! the policy files were rejected at ")
    assert out[1] == "!   policies/sentiment.yaml:9: spec.traffic: weights must sum to 100 (got 110)"
    assert any(line.startswith("sentiment") and line.rstrip().endswith("v4") for line in out)
    assert cli.main(["status", "--url", "http://admin.test", "-o", "wide"]) == 0
    wide = capsys.readouterr().out
    assert "127.0.0.1:2  NOT READY  HTTP 503" in wide  # per-endpoint readiness
    assert cli.main(["status", "--url", "http://admin.test", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == MODELS
    assert cli.main(["status", "--url", "http://admin.test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == MODELS


def test_traffic_shows_the_recent_window_next_to_the_totals() -> None:
    tally = traffic.Tally(window_s=5)
    for i in range(90):
        tally.answered("v3", 200, 5.0, at=float(i) / 10)  # 9 s of v3 only
    for i in range(10):
        tally.answered("v4", 200, 50.0, at=9.5 + i / 100)  # then a shift to v4
    table = traffic.render(tally, elapsed=10, rps=10, now=10.0)
    v3 = next(line for line in table.splitlines() if line.startswith("v3"))
    v4 = next(line for line in table.splitlines() if line.startswith("v4"))
    assert "90.0%" in v3 and "80.0%" in v3  # 90% of all requests; 40 of the last 5 s's 50
    assert "10.0%" in v4 and "20.0%" in v4
    assert "latencies: last 5s" in table


def test_traffic_ctrl_c_ends_with_a_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(*args: Any) -> None:
        tally: traffic.Tally = args[-1]
        tally.answered("v3", 200, 4.0, at=0.0)
        tally.failed("cannot connect to http://127.0.0.1:1: is Envoy listening there?")
        raise KeyboardInterrupt

    monkeypatch.setattr(traffic, "run", interrupted)
    assert cli.main(["traffic", "--duration", "5"]) == 0
    out = capsys.readouterr().out
    assert "switchyard traffic: 2 requests" in out and "latencies: the whole run" in out
    assert "(no answer)" in out and "is Envoy listening there?" in out
    assert "Traceback" not in out


def test_up_prints_rejected_and_accepted_reloads_but_not_no_ops() -> None:
    rejected = {"at": 0.0, "accepted": False, "changed": False, "errors": ["p.yaml:3: spec.x: bad"], "models": 0}
    accepted = {"at": 0.0, "accepted": True, "changed": True, "errors": [], "models": 1, "snapshot_version": "abc"}
    lines = reload_lines(rejected)
    assert lines[0].endswith("policy change rejected; still serving the last good configuration:")
    assert lines[1] == "    p.yaml:3: spec.x: bad"
    assert reload_lines(accepted)[0].endswith("policy change accepted: 1 model(s), snapshot abc")
    assert reload_lines({**accepted, "changed": False}) == []


@pytest.mark.parametrize("args", [[], ["--policies", "policies/", "--kubernetes"]])
def test_serve_reads_files_or_kubernetes_not_both(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", *args]) == 2
    assert capsys.readouterr().err == "switchyard serve: give either --policies DIR or --kubernetes\n"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9"])
def test_serve_refuses_a_lease_duration_that_cannot_work(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--kubernetes", "--lease-duration-s", value])
    assert exit_.value.code == 2
    assert "--lease-duration-s: must be more than 0 and less than a day" in capsys.readouterr().err
