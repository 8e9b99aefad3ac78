"""What validation accepts, Envoy accepts: generated valid policies, checked by the real Envoy.

Values go to the edges validation allows (durations of 292 years, UInt32
thresholds, content lengths near int64, regexes near Envoy's RE2 program-size
limit, wildcard hosts, non-ASCII header values); the translated resources are
handed to ``envoy --mode validate``. A policy we accept and Envoy refuses would
be a NACK in production: that is a validation bug.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.translate import translate
from tests.support.envoy_check import envoy_rejects
from tests.support.policy_strategies import dump, model_routes
from tests.unit.test_translate_golden import CASES, DATA

EXAMPLES = int(os.environ.get("SWITCHYARD_ENVOY_FUZZ_EXAMPLES", "30"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_envoy_accepts_every_policy_set_that_validates(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 3))
    docs = [data.draw(model_routes(name=f"m{i}", path_prefix=f"/m{i}")) for i in range(count)]
    text = "---\n".join(dump(doc) for doc in docs)
    intent = to_intent(load_texts({"p.yaml": text}))
    assert envoy_rejects(translate(intent)) is None


@pytest.mark.parametrize("case", CASES)
def test_envoy_accepts_the_golden_inputs(case: str) -> None:
    text = (DATA / "in" / f"{case}.yaml").read_text()
    assert envoy_rejects(translate(to_intent(load_texts({"p.yaml": text})))) is None


def test_the_check_can_fail() -> None:
    # A regex Envoy refuses, smuggled past validation by editing the IR: Envoy must say so.
    from dataclasses import replace

    text = dump(
        {
            "apiVersion": "switchyard/v1",
            "kind": "ModelRoute",
            "metadata": {"name": "m"},
            "spec": {
                "versions": {"v1": {"endpoints": ["10.0.0.1:80"]}},
                "rules": [{"name": "r", "match": {"headers": {"x-a": {"regex": "a+"}}}, "traffic": {"v1": 100}}],
            },
        }
    )
    intent = to_intent(load_texts({"p.yaml": text}))
    model = intent.models[0]
    rule = replace(model.rules[0], headers=(replace(model.rules[0].headers[0], value="a{1000}"),))
    broken = replace(intent, models=(replace(model, rules=(rule,)),))
    error = envoy_rejects(translate(broken))
    assert error is not None and "RE2 program size" in error


def test_envoy_accepts_names_at_their_longest() -> None:
    """Names are used in generated matchers (versioned paths, clusters, route names);
    at 63 characters, the longest a name may be, Envoy must still take them all."""
    model, v1, v2 = "m" * 63, "a" + "1" * 62, "b" + "2" * 62
    text = f"""\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {{name: {model}}}
spec:
  path_prefix: /{model}
  rewrite_prefix: /
  versions:
    {v1}: {{endpoints: ["127.0.0.1:9001"]}}
    {v2}: {{endpoints: ["127.0.0.1:9002"]}}
  traffic: {{{v1}: 90, {v2}: 10}}
  pinning: {{header: x-model-version, body_field: model_version}}
"""
    assert envoy_rejects(translate(to_intent(load_texts({"p.yaml": text})))) is None
