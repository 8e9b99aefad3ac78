"""The admin CLI: argument parsing, exit codes and readable output, against a fake server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from control_plane.admin.auth import Authenticator, Token, TokenFileError, check_exposure, load_tokens
from control_plane.cli import main as cli
from control_plane.cli.admin import table


def test_table_aligns_columns() -> None:
    assert table(["A", "LONGER"], [["x", None], ["yyy", 1]]).splitlines() == ["A    LONGER", "x    -", "yyy  1"]


def test_shift_rejects_malformed_weights(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["shift", "sentiment", "v3=ninety"])
    assert exit_info.value.code == 2
    assert "expected VERSION=PCT" in capsys.readouterr().err


def fake_server(monkeypatch: pytest.MonkeyPatch, seen: list[httpx.Request], status: int = 200) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"etag": '"e1"'})
        if status != 200:
            return httpx.Response(status, json={"status": status, "message": "weights must sum to 100 (got 90)"})
        return httpx.Response(
            200,
            json={
                "model": "sentiment",
                "action": "shift",
                "changed": True,
                "file": "p.yaml",
                "old": {"traffic": {"v3": 100}, "shadow": []},
                "new": {"traffic": json.loads(request.content)["weights"], "shadow": []},
                "snapshot_version": "abc",
            },
        )

    real = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr("control_plane.cli.client.httpx.Client", client)


def test_shift_sends_if_match_and_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[httpx.Request] = []
    fake_server(monkeypatch, seen)
    monkeypatch.setenv("SWITCHYARD_TOKEN", "t0ken")
    monkeypatch.setenv("SWITCHYARD_URL", "http://admin.test:1")
    assert cli.main(["shift", "sentiment", "v3=90", "v4=10"]) == 0
    get, put = seen
    assert get.method == "GET"
    assert str(put.url) == "http://admin.test:1/v1/models/sentiment/traffic"
    assert put.headers["if-match"] == '"e1"' and put.headers["authorization"] == "Bearer t0ken"
    assert json.loads(put.content) == {"weights": {"v3": 90, "v4": 10}}
    assert "shift accepted" in capsys.readouterr().out


def test_rejection_exits_1_with_the_server_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server(monkeypatch, [], status=422)
    assert cli.main(["shift", "sentiment", "v3=90", "--url", "http://admin.test:1"]) == 1
    assert capsys.readouterr().err == "switchyard shift: weights must sum to 100 (got 90)\n"


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["envoys", "--url", "http://127.0.0.1:1"]) == 1
    assert "cannot reach the admin API" in capsys.readouterr().err


def test_tokens_file_and_constant_time_lookup(tmp_path: Any) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "- {name: a, token: aaaaaaaaaaaaaaaaaaaa, role: operator}\n- {name: b, token: short, role: admin}\n"
    )
    with pytest.raises(TokenFileError, match=r"entry 1: token must be .* at least 16(.|\n)*role must be one of"):
        load_tokens(path)
    path.write_text("- {name: a, token: aaaaaaaaaaaaaaaaaaaa, role: operator}\n")
    auth = Authenticator(load_tokens(path))
    assert auth.identify("Bearer aaaaaaaaaaaaaaaaaaaa") is not None
    assert auth.identify("Bearer aaaaaaaaaaaaaaaaaaab") is None
    assert auth.identify("Basic aaaaaaaaaaaaaaaaaaaa") is None and auth.identify(None) is None
    check_exposure("0.0.0.0", auth)
    check_exposure("::1", Authenticator(None))
    with pytest.raises(TokenFileError, match="without authentication"):
        check_exposure("0.0.0.0", Authenticator(None))
    assert Authenticator([Token("r", b"x" * 16, "reader")]).identify("bearer " + "x" * 16) is not None
