"""Write-back, tried on generated files and changes: the edit lands, nothing else moves.

For any policy file (block or flow style, keys in any order, comments on every
line) and any new split and mirrors: the edited file parses to exactly the
requested routing, every comment survives, every other key keeps its place,
and keys the split gains appear in the order the versions are declared.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import load_texts
from control_plane.sources.splice import edit_routing
from tests.support.policy_strategies import model_routes, splits

# ruamel's round trip takes ~0.25 s per example: fewer than the parser fuzzers.
EXAMPLES = int(os.environ.get("SWITCHYARD_FUZZ_EXAMPLES", "200")) // 4


def keys_in_order(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every mapping key path, in document order, except inside traffic and shadow."""
    out: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if path == ("spec",) and k in ("traffic", "shadow"):
                continue
            out.append((*path, str(k)))
            out.extend(keys_in_order(v, (*path, str(k))))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(keys_in_order(v, (*path, str(i))))
    return out


def routing_lines(text: str) -> set[int]:
    """0-based numbers of the lines holding spec.traffic and spec.shadow (their comments go with them)."""
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    spec = next(v for k, v in root.value if k.value == "spec")
    lines: set[int] = set()
    for key, value in spec.value:
        if key.value in ("traffic", "shadow"):
            lines.update(range(key.start_mark.line, value.end_mark.line + 1))
    return lines


@st.composite
def files_and_changes(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, int], list[tuple[str, float]]]:
    doc = draw(model_routes(name="sentiment"))
    spec = doc["spec"]
    order = draw(st.permutations(list(spec)))
    doc["spec"] = {k: spec[k] for k in order}
    flow = draw(st.booleans())
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None if flow else False, width=1 << 16)
    lines = [
        f"{line}  # c{i}" if line.rstrip().endswith(("]", "}")) or ": " in line else line
        for i, line in enumerate(text.splitlines())
    ]
    text = "# header comment\n" + "\n".join(lines) + "\n"
    versions = list(spec["versions"])
    traffic = draw(splits(versions))
    free = [v for v in versions if v not in traffic]
    shadow = (
        [
            (v, draw(st.sampled_from([5.0, 50.0, 100.0, 12.5])))
            for v in draw(st.lists(st.sampled_from(free), unique=True))
        ]
        if free
        else []
    )
    return text, doc, traffic, shadow


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files_and_changes())
def test_the_edit_lands_and_nothing_else_moves(
    case: tuple[str, dict[str, Any], dict[str, int], list[tuple[str, float]]],
) -> None:
    text, doc, traffic, shadow = case
    try:
        load_texts({"p.yaml": text})
    except PolicyErrors:  # e.g. a label key the generator made that YAML 1.1 reads back differently
        return
    edited = edit_routing(text, "sentiment", traffic, shadow)
    after = yaml.safe_load(edited)
    assert after["spec"]["traffic"] == traffic
    got_shadow = [(s["version"], float(s.get("percent", 100))) for s in after["spec"].get("shadow", [])]
    assert sorted(got_shadow) == sorted(shadow)
    assert keys_in_order(after) == keys_in_order(yaml.safe_load(text)), "other keys keep their order"
    routing = routing_lines(text)
    for number, line in enumerate(text.splitlines()):
        marker = re.search(r"# c\d+$", line)
        if marker and number not in routing:
            assert re.search(re.escape(marker.group()) + "$", edited, re.M), f"comment lost: {line!r}"
    declared = list(doc["spec"]["versions"])
    before_keys = list(yaml.safe_load(text)["spec"].get("traffic") or {})
    kept = [v for v in before_keys if v in traffic]
    added = [v for v in after["spec"]["traffic"] if v not in before_keys]
    assert [v for v in after["spec"]["traffic"] if v in kept] == kept, "kept split keys keep their order"
    assert added == sorted(added, key=declared.index), "new split keys follow the versions' order"
