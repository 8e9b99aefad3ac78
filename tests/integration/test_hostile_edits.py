"""Hostile and broken policy edits while a real Envoy serves traffic: nothing that works stops.

Each edit must be rejected (shown in /v1/status with file:line), leave the
served snapshot and split exactly as they were, cost clients nothing (no
error, no answer from a version outside the split), and leave the watcher
alive: the next good edit is applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.load import Load
from tests.support.procs import wait_for
from tests.support.stack import Stack
from tests.unit.test_policy_limits import alias_bomb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPLIT = {"sentiment-v3": 90, "sentiment-v4": 10}


def hostile_edits(stack: Stack) -> list[tuple[str, Callable[[str], str], str]]:
    """(what, how the good policy text is damaged, text the rejection must contain)."""

    def spec(line: str) -> Callable[[str], str]:
        return lambda good: good.rstrip("\n") + "\n  " + line + "\n"

    bomb = alias_bomb().replace("\n", "\n    ")
    return [
        ("float tag", spec("timeout: !!float 'soon'"), "spec.timeout: cannot read 'soon' as !!float"),
        ("timestamp tag", spec("connect_timeout: !!timestamp 2001-13-45"), "month must be in 1..12"),
        ("recursive alias", spec("rules: &loop [*loop]"), "recursive alias"),
        (
            "content length beyond int64",
            spec(
                "rules: [{name: r, match: {min_content_length: 99999999999999999999999}, traffic: {sentiment-v4: 100}}]"
            ),
            "must be <= 9223372036854775806",
        ),
        ("uint32 overflow", spec("outlier_detection: {consecutive_5xx: 4294967296}"), "must be <= 4294967295"),
        (
            "threshold overflow",
            lambda good: good.replace(
                "unhealthy_threshold: 1}", "unhealthy_threshold: 1, healthy_threshold: 4294967296}"
            ),
            "spec.health_check.healthy_threshold: must be <= 4294967295",
        ),
        ("huge duration", spec("timeout: 999999999999999999999h"), "at most 9223372035s"),
        ("duration Envoy refuses", spec("timeout: 99999999999h"), "at most 9223372035s"),
        (
            "regex RE2 refuses",
            spec(
                "rules: [{name: r, match: {headers: {x-u: {regex: '(?<=beta)-user'}}}, traffic: {sentiment-v4: 100}}]"
            ),
            "invalid perl operator",
        ),
        (
            "alias bomb",
            lambda good: good.replace(
                "metadata: {name: sentiment}", "metadata:\n  name: sentiment\n  labels:\n    " + bomb
            ),
            "more than 100,000 values",
        ),
        ("malformed YAML", lambda good: good.replace("traffic: {", "traffic: {{"), "malformed YAML"),
        ("truncated mid-document", lambda good: good[: good.index("    sentiment-v4:") + 20], "malformed YAML"),
        ("binary garbage", lambda good: "\x00\x01\x02\xff garbage", "malformed YAML"),
        ("emptied file", lambda good: "", "the file has no documents now"),
        (
            "undeclared version",
            lambda good: good.replace("{sentiment-v3: 90, sentiment-v4: 10}", "{sentiment-v3: 90, sentiment-v9: 10}"),
            "'sentiment-v9' is not declared",
        ),
        ("unknown field", spec("timeoutt: 5s"), "spec.timeoutt: unknown field"),
    ]


def last_rejected(stack: Stack) -> dict[str, Any] | None:
    rejected: dict[str, Any] | None = stack.control_plane.status()["policy"]["last_rejected"]
    return rejected


def wait_rejected(stack: Stack, since: float) -> dict[str, Any]:
    def newer() -> dict[str, Any] | None:
        rejected = last_rejected(stack)
        return rejected if rejected is not None and rejected["at"] > since else None

    return wait_for(newer, what="the control plane to reject the edit")


def served_split(stack: Stack) -> dict[str, int]:
    models = httpx.get(f"{stack.control_plane.url}/v1/models", timeout=5).json()["models"]
    split: dict[str, int] = models[0]["traffic"]
    return split


def test_hostile_edits_change_nothing_and_the_next_good_edit_applies(stack: Stack) -> None:
    good = stack.policy(traffic="{sentiment-v3: 90, sentiment-v4: 10}")
    if stack.policy_file.read_text() != good:  # another test of the module left its own policy
        stack.apply(good)
    snapshot = stack.control_plane.status()["snapshot_version"]
    with Load(stack.url) as load:
        wait_for(lambda: len(load.answers) > 20, what="traffic to flow")
        for what, damage, expected in hostile_edits(stack):
            previous = last_rejected(stack)
            since = previous["at"] if previous else 0.0
            stack.write(damage(good))
            rejected = wait_rejected(stack, since)
            errors = "\n".join(rejected["errors"])
            assert expected in errors, (what, errors)
            assert all(e.startswith(str(stack.policy_dir)) for e in rejected["errors"]), (what, errors)
            status = stack.control_plane.status()
            assert status["snapshot_version"] == snapshot, what
            assert served_split(stack) == SPLIT, what
            assert httpx.get(f"{stack.control_plane.url}/healthz", timeout=5).status_code == 200, what
        # A duplicate of the model in a second file, then that file deleted again.
        stack.write(good)
        other = stack.policy_dir / "copy.yaml"
        previous = last_rejected(stack)
        other.write_text(good.split("---\n", 1)[1])
        rejected = wait_rejected(stack, previous["at"] if previous else 0.0)
        assert "duplicate model name 'sentiment'" in "\n".join(rejected["errors"])
        other.unlink()
        # The good text again is accepted (it is the same snapshot), then a real change applies.
        stack.apply(stack.policy(traffic="{sentiment-v4: 100}"))
        time.sleep(0.3)  # requests already in flight may still be answered by the old split
        mark = load.mark()
        wait_for(lambda: load.mark() > mark + 20, what="traffic after the change")
        after = load.answers[mark:]
    answers = load.answers
    assert answers, "the load ran"
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:5]
    assert {a.version for a in answers[: mark - 1]} <= set(SPLIT), "only the split's versions answered"
    assert {a.version for a in after} == {"sentiment-v4"}
    assert served_split(stack) == {"sentiment-v4": 100}
