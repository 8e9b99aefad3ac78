"""Golden files: testdata/in/<name>.yaml -> testdata/out/<name>.<type>.yaml.

What is compared is the production path: the bytes a controller publishes, decoded.

Regenerate after an intended change with ``SWITCHYARD_UPDATE_GOLDEN=1 pytest tests/unit``
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from control_plane.engine.controller import Controller
from control_plane.sources.files import FileSource
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.translate.render import to_plain
from control_plane.translate.resources import decode
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.snapshot import Snapshot

DATA = Path(__file__).parent / "testdata"
CASES = sorted(p.stem for p in (DATA / "in").glob("*.yaml"))
KINDS = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes"}
UPDATE = os.environ.get("SWITCHYARD_UPDATE_GOLDEN") == "1"


def pushed(case: str) -> Snapshot:
    """The snapshot a controller publishes for the case: the bytes Envoy is sent."""
    controller = Controller(FileSource([DATA / "in" / f"{case}.yaml"]), SnapshotCache())
    outcome = controller.reload()
    assert outcome.accepted, outcome.errors  # includes the snapshot's consistency check
    assert controller.cache.current is not None
    return controller.cache.current


def render(case: str) -> dict[str, str]:
    entries = pushed(case).entries
    return {
        KINDS[type_url]: yaml.safe_dump(
            [to_plain(m) for _, m in sorted(decode(type_url, {n: e.body for n, e in by_name.items()}).items())],
            sort_keys=False,
        )
        for type_url, by_name in entries.items()
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
        assert pushed(case).version == pushed(case).version
