"""Property: any text either loads and translates to resources that serialise, or is
rejected with ``file:line: [field: ]message`` lines. Never another exception.

Bounded in CI; ``SWITCHYARD_FUZZ_EXAMPLES=20000 pytest tests/unit/test_policy_fuzz.py``
runs a longer campaign.
"""

from __future__ import annotations

import json
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.engine.controller import translation_errors
from control_plane.operations.changes import etag_of
from control_plane.policy.compile import to_intent
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import load_texts
from tests.support.policy_strategies import dump, model_routes, mutated, policy_texts

EXAMPLES = int(os.environ.get("SWITCHYARD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
LOCATED = re.compile(r"^p\.yaml:\d+: \S")


def accept_or_locate(text: str) -> None:
    try:
        policies = load_texts({"p.yaml": text})
    except PolicyErrors as exc:
        rejection = exc
    else:
        rejection = None
    if rejection is not None:
        assert rejection.errors, "a rejection lists at least one error"
        for error in rejection.errors:
            assert LOCATED.match(str(error)), str(error)
            assert len(str(error)) < 2_000, "errors stay readable"
        return
    intent = to_intent(policies)
    assert translation_errors(policies, intent) == []  # the controller's translation and snapshot
    for located in policies.models:
        # What the admin API shows of it must be strict JSON (no NaN, no surrogates).
        json.dumps(located.value.model_dump(mode="json"), allow_nan=False).encode("utf-8")
        etag_of(located.value)


@FUZZ
@given(policy_texts())
def test_any_policy_text_is_accepted_or_rejected_with_a_location(text: str) -> None:
    accept_or_locate(text)


@FUZZ
@given(model_routes())
def test_every_generated_valid_policy_loads_and_translates(doc: dict[str, object]) -> None:
    policies = load_texts({"p.yaml": dump(doc)})
    assert translation_errors(policies, to_intent(policies)) == []


@FUZZ
@given(st.data())
def test_two_documents_mutated_together(data: st.DataObject) -> None:
    first = data.draw(model_routes(name="a", path_prefix="/a"))
    second = data.draw(mutated(data.draw(model_routes(name="b", path_prefix="/b"))))
    accept_or_locate(dump(first) + "---\n" + dump(second))


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    accept_or_locate(text)
