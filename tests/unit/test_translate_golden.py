"""Golden files: testdata/in/<name>.yaml -> testdata/out/<name>.<type>.yaml.

Regenerate after an intended change with ``SWITCHYARD_UPDATE_GOLDEN=1 pytest tests/unit``
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_policies
from control_plane.render import to_plain
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, translate
from control_plane.xds.snapshot import Snapshot

DATA = Path(__file__).parent / "testdata"
CASES = sorted(p.stem for p in (DATA / "in").glob("*.yaml"))
KINDS = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes"}
UPDATE = os.environ.get("SWITCHYARD_UPDATE_GOLDEN") == "1"


def render(case: str) -> dict[str, str]:
    resources = translate(to_intent(load_policies([DATA / "in" / f"{case}.yaml"])))
    Snapshot.build(resources)  # golden output must also pass the consistency check
    return {
        KINDS[type_url]: yaml.safe_dump([to_plain(m) for _, m in sorted(messages.items())], sort_keys=False)
        for type_url, messages in resources.by_type.items()
    }


@pytest.mark.parametrize("case", CASES)
def test_translation_matches_golden(case: str) -> None:
    for kind, text in render(case).items():
        golden = DATA / "out" / f"{case}.{kind}.yaml"
        if UPDATE:
            golden.write_text(text)
        assert golden.exists(), f"missing {golden}; run with SWITCHYARD_UPDATE_GOLDEN=1"
        assert text == golden.read_text(), f"{golden} differs; review and regenerate if intended"


def test_translation_is_deterministic() -> None:
    for case in CASES:
        a = Snapshot.build(translate(to_intent(load_policies([DATA / "in" / f"{case}.yaml"]))))
        b = Snapshot.build(translate(to_intent(load_policies([DATA / "in" / f"{case}.yaml"]))))
        assert a.version == b.version
