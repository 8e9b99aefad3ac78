"""Write-back keeps the user's file: comments, order, style; only changed lines differ."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from control_plane.policy.loader import load_texts
from control_plane.sources.splice import StoreError, edit_routing, write_atomic

COMMENTED = """\
# Production routing for sentiment.   Owner: ml-platform
apiVersion: switchyard/v1
kind: Gateway
metadata: {name: gateway}
spec: {address: 127.0.0.1, port: 10000}
---
# the model
apiVersion: switchyard/v1
kind: ModelRoute
metadata:
  name: sentiment   # do not rename
spec:
  versions:
    sentiment-v3:
      endpoints: ['127.0.0.1:8101']
    sentiment-v4:
      endpoints:
      - "127.0.0.1:8201"
    sentiment-v5: {endpoints: ["127.0.0.1:8401"]}
  traffic:
    sentiment-v3: 90   # stable
    sentiment-v4: 10   # canary
  # mirrors
  shadow:
    - version: sentiment-v5
      percent: 5

  rules:
      - name: premium
        match: {headers: {x-user-tier: premium}}
        traffic: {sentiment-v4: 100}
  timeout:    5s
"""

FLOW = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  versions:
    sentiment-v3: {endpoints: ["127.0.0.1:8101"]}   # stable
    sentiment-v4: {endpoints: ["127.0.0.1:8201"]}
    sentiment-v5: {endpoints: ["127.0.0.1:8401"]}
  traffic: {sentiment-v3: 90, sentiment-v4: 10}  # canary
  shadow: [{version: sentiment-v5, percent: 50}]
  timeout: 5s
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: other}
spec:
  path_prefix: /other
  versions:
    a: {endpoints: ["127.0.0.1:9001"]}
"""


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0):
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    return removed, added


def routing(text: str, model: str) -> tuple[dict[str, int] | None, list[tuple[str, float]]]:
    for located in load_texts({"p.yaml": text}).models:
        if located.value.metadata.name == model:
            spec = located.value.spec
            return spec.traffic, [(s.version, s.percent) for s in spec.shadow]
    raise AssertionError(model)


def test_flow_mapping_stays_flow_and_only_its_line_changes() -> None:
    new = edit_routing(FLOW, "sentiment", {"sentiment-v3": 75, "sentiment-v4": 25}, [("sentiment-v5", 50)])
    assert changed_lines(FLOW, new) == (
        ["  traffic: {sentiment-v3: 90, sentiment-v4: 10}  # canary"],
        ["  traffic: {sentiment-v3: 75, sentiment-v4: 25}  # canary"],
    )
    assert routing(new, "sentiment") == ({"sentiment-v3": 75, "sentiment-v4": 25}, [("sentiment-v5", 50.0)])


def test_block_mapping_keeps_comments_and_odd_layout_elsewhere() -> None:
    new = edit_routing(COMMENTED, "sentiment", {"sentiment-v3": 50, "sentiment-v4": 50}, [("sentiment-v5", 5)])
    assert changed_lines(COMMENTED, new) == (
        ["    sentiment-v3: 90   # stable", "    sentiment-v4: 10   # canary"],
        ["    sentiment-v3: 50   # stable", "    sentiment-v4: 50   # canary"],
    )
    # ruamel would re-indent `rules` and `timeout:    5s`; the splice keeps the user's layout.
    assert "      - name: premium\n" in new and "  timeout:    5s\n" in new


def test_removing_the_last_mirror_drops_the_block_but_keeps_comments_and_spacing() -> None:
    new = edit_routing(COMMENTED, "sentiment", {"sentiment-v3": 90, "sentiment-v4": 10}, [])
    removed, added = changed_lines(COMMENTED, new)
    assert removed == ["  shadow:", "    - version: sentiment-v5", "      percent: 5"]
    assert added == []
    assert "  # mirrors\n\n  rules:\n" in new
    assert routing(new, "sentiment")[1] == []


def test_adding_traffic_and_shadow_where_there_were_none() -> None:
    new = edit_routing(FLOW, "other", {"a": 100}, [])
    assert changed_lines(FLOW, new) == ([], ["  traffic: {a: 100}"])
    assert new.index("traffic: {a: 100}") > new.index("a: {endpoints")
    new = edit_routing(FLOW, "sentiment", {"sentiment-v3": 100}, [("sentiment-v5", 50), ("sentiment-v4", 12.5)])
    traffic, shadow = changed_lines(FLOW, new)[1]
    # ruamel keeps an end-of-line comment at its column
    assert traffic.startswith("  traffic: {sentiment-v3: 100} ") and traffic.endswith("# canary")
    assert shadow == "  shadow: [{version: sentiment-v5, percent: 50}, {version: sentiment-v4, percent: 12.5}]"


def test_unknown_model_and_crlf() -> None:
    with pytest.raises(StoreError, match="'nope' is not defined"):
        edit_routing(FLOW, "nope", {"a": 100}, [])
    crlf = FLOW.replace("\n", "\r\n")
    new = edit_routing(crlf, "sentiment", {"sentiment-v4": 100}, [("sentiment-v5", 50)])
    assert "\r\n" in new and "\n" not in new.replace("\r\n", "")
    assert routing(new, "sentiment")[0] == {"sentiment-v4": 100}


def test_write_atomic_keeps_mode_and_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old\n")
    os.chmod(real, 0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    write_atomic(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
