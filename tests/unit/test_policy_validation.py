"""Every invalid input is rejected with file:line: field.path: message; valid ones load."""

from __future__ import annotations

import textwrap

import pytest

from control_plane.policy.compile import to_intent
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import load_texts

BASE = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  versions:
    v3: {endpoints: ["127.0.0.1:8101"]}
    v4: {endpoints: ["127.0.0.1:8201"]}
    v5: {endpoints: ["127.0.0.1:8301"]}
  traffic: {v3: 90, v4: 10}
"""


def errors_of(text: str, file: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyErrors) as info:
        load_texts({file: text})
    return [str(e) for e in info.value.errors]


def with_spec(extra: str, traffic: str | None = None) -> str:
    text = BASE if traffic is None else BASE.replace("traffic: {v3: 90, v4: 10}", f"traffic: {traffic}")
    return text + textwrap.indent(textwrap.dedent(extra).strip(), "  ") + "\n"


INVALID = [
    # (id, document, expected error line)
    ("malformed-yaml", "apiVersion: switchyard/v1\nkind: [ModelRoute\n", "p.yaml:3: malformed YAML"),
    ("not-a-mapping", "- a\n- b\n", "p.yaml:1: a policy document must be a mapping, got list"),
    (
        "wrong-api-version",
        BASE.replace("switchyard/v1", "switchyard/v2"),
        "p.yaml:1: apiVersion: must be 'switchyard/v1'",
    ),
    ("unknown-kind", BASE.replace("kind: ModelRoute", "kind: Route"), "p.yaml:2: kind: unknown kind 'Route'"),
    ("unknown-field", with_spec("typo_field: 1"), "p.yaml:10: spec.typo_field: unknown field"),
    (
        "unknown-nested-field",
        BASE.replace('{endpoints: ["127.0.0.1:8201"]}', '{endpoints: ["127.0.0.1:8201"], weight: 3}'),
        "p.yaml:7: spec.versions.v4.weight: unknown field",
    ),
    (
        "negative-weight",
        with_spec("", traffic="{v3: 110, v4: -10}"),
        "p.yaml:9: spec.traffic.v4: must be >= 0 (got -10)",
    ),
    (
        "non-integer-weight",
        with_spec("", traffic="{v3: 89.5, v4: 10.5}"),
        "p.yaml:9: spec.traffic.v3: must be an integer (got 89.5)",
    ),
    (
        "string-weight",
        with_spec("", traffic='{v3: "90", v4: 10}'),
        "p.yaml:9: spec.traffic.v3: must be an integer (got '90')",
    ),
    (
        "sum-not-100",
        with_spec("", traffic="{v3: 90, v4: 20}"),
        "p.yaml:9: spec.traffic: weights must sum to 100 (got 110)",
    ),
    (
        "undeclared-in-traffic",
        with_spec("", traffic="{v3: 90, v9: 10}"),
        "p.yaml:9: spec.traffic.v9: version 'v9' is not declared in spec.versions",
    ),
    (
        "undeclared-in-rule",
        with_spec("""
        rules:
          - name: premium
            match: {headers: {x-tier: premium}}
            traffic: {v7: 100}
        """),
        "p.yaml:13: spec.rules[0].traffic.v7: version 'v7' is not declared",
    ),
    (
        "undeclared-in-shadow",
        with_spec("shadow: [{version: v8, percent: 5}]"),
        "p.yaml:10: spec.shadow[0].version: version 'v8' is not declared",
    ),
    (
        "grpc-on-some-versions",
        BASE.replace(
            '{endpoints: ["127.0.0.1:8201"]}', '{endpoints: ["127.0.0.1:8201"], grpc_endpoints: ["127.0.0.1:9201"]}'
        ),
        "p.yaml:6: spec.versions.v3: grpc_endpoints (or service.grpc_port) is missing: it is declared for v4, and a model serves gRPC from every"
        " version or from none",
    ),
    (
        "grpc-endpoints-empty",
        BASE.replace('{endpoints: ["127.0.0.1:8201"]}', '{endpoints: ["127.0.0.1:8201"], grpc_endpoints: []}'),
        "p.yaml:7: spec.versions.v4.grpc_endpoints: List should have at least 1 item",
    ),
    (
        "grpc-endpoint-unparsable",
        BASE.replace('{endpoints: ["127.0.0.1:8201"]}', '{endpoints: ["127.0.0.1:8201"], grpc_endpoints: ["x"]}'),
        "p.yaml:7: spec.versions.v4.grpc_endpoints[0]: unparsable endpoint 'x'",
    ),
    (
        "path-prefix-of-the-grpc-service",
        with_spec("path_prefix: /inference.GRPCInferenceService"),
        "p.yaml:10: spec.path_prefix: '/inference.GRPCInferenceService' is taken: paths under"
        " /inference.GRPCInferenceService/ are the gRPC inference service's",
    ),
    (
        "shadow-self",
        with_spec("shadow: [{version: v4, percent: 5}]"),
        "p.yaml:10: spec.shadow[0].version: 'v4' already receives live traffic here: a version cannot shadow itself",
    ),
    (
        "rule-shadow-self",
        with_spec("""
        rules:
          - name: r
            match: {headers: {x-a: b}}
            traffic: {v5: 100}
            shadow: [{version: v5}]
        """),
        "p.yaml:14: spec.rules[0].shadow[0].version: 'v5' already receives live traffic",
    ),
    (
        "inherited-shadow-self",
        with_spec("""
        shadow: [{version: v5, percent: 10}]
        rules:
          - name: r
            match: {headers: {x-a: b}}
            traffic: {v5: 100}
        """),
        "p.yaml:14: spec.rules[0].traffic.v5: spec.shadow[0] mirrors to 'v5'",
    ),
    (
        "shadow-percent-range",
        with_spec("shadow: [{version: v5, percent: 150}]"),
        "p.yaml:10: spec.shadow[0].percent: must be <= 100",
    ),
    ("bad-duration", with_spec("timeout: 5 seconds"), "p.yaml:10: spec.timeout: bad duration '5 seconds'"),
    (
        "bad-duration-number",
        with_spec("health_check: {path: /ready, interval: 2}"),
        "p.yaml:10: spec.health_check.interval: bad duration 2",
    ),
    (
        "bad-endpoint-port",
        BASE.replace("127.0.0.1:8101", "127.0.0.1:0"),
        "p.yaml:6: spec.versions.v3.endpoints[0]: unparsable endpoint '127.0.0.1:0': port must be 1-65535",
    ),
    (
        "bad-endpoint-host",
        BASE.replace("127.0.0.1:8101", "not_a host:80"),
        "p.yaml:6: spec.versions.v3.endpoints[0]: unparsable endpoint 'not_a host:80'",
    ),
    (
        "endpoint-without-port",
        BASE.replace("127.0.0.1:8101", "model-v3.internal"),
        "p.yaml:6: spec.versions.v3.endpoints[0]: unparsable endpoint 'model-v3.internal': expected host:port",
    ),
    (
        "no-endpoints",
        BASE.replace('{endpoints: ["127.0.0.1:8101"]}', "{endpoints: []}"),
        "p.yaml:6: spec.versions.v3.endpoints: List should have at least 1 item",
    ),
    (
        "bad-version-name",
        BASE.replace("v5: {", "V_5: {"),
        "p.yaml:8: spec.versions.V_5: 'V_5' is not a valid name",
    ),
    (
        "missing-traffic",
        BASE.replace("  traffic: {v3: 90, v4: 10}\n", ""),
        "p.yaml:4: spec: traffic is required",
    ),
    (
        "header-two-kinds",
        with_spec("""
        rules:
          - name: r
            match: {headers: {x-a: {exact: a, prefix: b}}}
            traffic: {v4: 100}
        """),
        "p.yaml:12: spec.rules[0].match.headers.x-a: a header match sets exactly one of",
    ),
    (
        "bad-regex",
        with_spec("""
        rules:
          - name: r
            match: {headers: {x-a: {regex: "(unclosed"}}}
            traffic: {v4: 100}
        """),
        "p.yaml:12: spec.rules[0].match.headers.x-a.regex: invalid regular expression",
    ),
    (
        "empty-match",
        with_spec("""
        rules:
          - name: r
            match: {}
            traffic: {v4: 100}
        """),
        "p.yaml:12: spec.rules[0].match: a rule's match needs at least one condition",
    ),
    (
        "duplicate-rule",
        with_spec("""
        rules:
          - {name: r, match: {headers: {x-a: b}}, traffic: {v4: 100}}
          - {name: r, match: {headers: {x-a: c}}, traffic: {v4: 100}}
        """),
        "p.yaml:12: spec.rules[1].name: duplicate rule name 'r'",
    ),
    ("duplicate-key", BASE + "  traffic: {v3: 100}\n", "p.yaml:10: spec.traffic: duplicate key"),
    (
        "pinning-empty",
        with_spec("pinning: {}"),
        "p.yaml:10: spec.pinning: pinning needs a header, a body_field, or both",
    ),
    (
        "retry-on-unknown",
        with_spec("retries: {attempts: 2, on: [sometimes]}"),
        "p.yaml:10: spec.retries.on[0]: Input should be",
    ),
    ("bad-host", with_spec('hosts: ["bad host"]'), "p.yaml:10: spec.hosts[0]: 'bad host' is not a host name"),
    (
        "bad-path-prefix",
        with_spec("path_prefix: models"),
        "p.yaml:10: spec.path_prefix: String should match pattern",
    ),
    (
        "path-prefix-trailing-slash",
        with_spec("path_prefix: /models/sentiment/"),
        "p.yaml:10: spec.path_prefix: '/models/sentiment/' must not end with '/': write '/models/sentiment'",
    ),
    (
        "path-prefix-only-slashes",
        with_spec("path_prefix: //"),
        "p.yaml:10: spec.path_prefix: '//' must not end with '/': write '/'",
    ),
    (
        "path-prefix-query",
        with_spec('path_prefix: "/models?v=1"'),
        "p.yaml:10: spec.path_prefix: '/models?v=1' must not contain '?' or '#'",
    ),
    (
        "gateway-bad-port",
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {port: 70000}\n",
        "p.yaml:4: spec.port: must be <= 65535 (got 70000)",
    ),
    (
        "gateway-bad-address",
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {address: localhost}\n",
        "p.yaml:4: spec.address: 'localhost' is not an IP address",
    ),
    (
        "canary-unknown-field",
        with_spec("canary: {candidate: v4, steps: [10, 50], typo: 1}"),
        "p.yaml:10: spec.canary.typo: unknown field",
    ),
    (
        "canary-no-steps",
        with_spec("canary: {candidate: v4}"),
        "p.yaml:10: spec.canary: a canary sets exactly one of steps",
    ),
    (
        "canary-steps-and-step-size",
        with_spec("canary: {candidate: v4, steps: [10], step_size: 10}"),
        "p.yaml:10: spec.canary: a canary sets exactly one of steps",
    ),
    (
        "canary-steps-not-increasing",
        with_spec("canary: {candidate: v4, steps: [10, 10, 50]}"),
        "p.yaml:10: spec.canary: steps must increase strictly",
    ),
    (
        "canary-step-over-100",
        with_spec("canary: {candidate: v4, steps: [10, 150]}"),
        "p.yaml:10: spec.canary.steps[1]: must be <= 100",
    ),
    (
        "canary-empty-steps",
        with_spec("canary: {candidate: v4, steps: []}"),
        "p.yaml:10: spec.canary.steps:",
    ),
    (
        "canary-undeclared-candidate",
        with_spec("canary: {candidate: v9, steps: [10]}"),
        "p.yaml:10: spec.canary.candidate: version 'v9' is not declared",
    ),
    (
        "canary-undeclared-baseline",
        with_spec("canary: {candidate: v4, baseline: v8, steps: [10]}"),
        "p.yaml:10: spec.canary.baseline: version 'v8' is not declared",
    ),
    (
        "canary-candidate-is-baseline",
        with_spec("canary: {candidate: v4, baseline: v4, steps: [10]}"),
        "p.yaml:10: spec.canary: candidate and baseline are both 'v4'",
    ),
    (
        "canary-error-rate-over-1",
        with_spec("canary: {candidate: v4, steps: [10], max_error_rate: 5}"),
        "p.yaml:10: spec.canary.max_error_rate: must be <= 1",
    ),
    (
        "canary-interval-too-short",
        with_spec("canary: {candidate: v4, steps: [10], interval: 100ms}"),
        "p.yaml:10: spec.canary: interval must be at least 500ms",
    ),
    (
        "canary-max-weight-with-steps",
        with_spec("canary: {candidate: v4, steps: [10], max_weight: 50}"),
        "p.yaml:10: spec.canary: max_weight goes with step_size",
    ),
    (
        "canary-min-requests-zero",
        with_spec("canary: {candidate: v4, steps: [10], min_requests: 0}"),
        "p.yaml:10: spec.canary.min_requests: must be >= 1",
    ),
    (
        "canary-bad-duration",
        with_spec("canary: {candidate: v4, steps: [10], interval: soon}"),
        "p.yaml:10: spec.canary.interval: bad duration 'soon'",
    ),
    (
        "canary-negative-ratio",
        with_spec("canary: {candidate: v4, steps: [10], max_p99_ratio: -1}"),
        "p.yaml:10: spec.canary.max_p99_ratio: must be > 0",
    ),
    # Inputs that once escaped validation: each either crashed the reload (and with it
    # the file watcher) or was accepted and then refused by Envoy.
    (
        "float-tag-that-fails",
        with_spec("timeout: !!float 'soon'"),
        "p.yaml:10: spec.timeout: cannot read 'soon' as !!float",
    ),
    (
        "timestamp-tag-that-fails",
        with_spec("timeout: !!timestamp 2001-13-45"),
        "p.yaml:10: spec.timeout: cannot read '2001-13-45' as !!timestamp: month must be in 1..12",
    ),
    (
        "int-tag-that-fails",
        with_spec("timeout: !!int twelve"),
        "p.yaml:10: spec.timeout: cannot read 'twelve' as !!int",
    ),
    ("unknown-scalar-tag", with_spec("timeout: !later 5s"), "p.yaml:10: spec.timeout: cannot read '5s' as !later"),
    ("tag-on-a-mapping", with_spec("retries: !!set {reset}"), "p.yaml:10: spec.retries: unsupported tag '!!set'"),
    (
        "recursive-alias",
        with_spec("rules: &loop [*loop]"),
        "p.yaml:10: spec.rules[0]: recursive alias: an anchor is used inside itself",
    ),
    (
        "content-length-beyond-int64",
        with_spec("rules: [{name: r, match: {min_content_length: 99999999999999999999999}, traffic: {v4: 100}}]"),
        "p.yaml:10: spec.rules[0].match.min_content_length: must be <= 9223372036854775806",
    ),
    (
        "consecutive-5xx-beyond-uint32",
        with_spec("outlier_detection: {consecutive_5xx: 4294967296}"),
        "p.yaml:10: spec.outlier_detection.consecutive_5xx: must be <= 4294967295 (got 4294967296)",
    ),
    (
        "healthy-threshold-beyond-uint32",
        with_spec("health_check: {path: /ready, healthy_threshold: 4294967296}"),
        "p.yaml:10: spec.health_check.healthy_threshold: must be <= 4294967295",
    ),
    (
        "duration-beyond-float-precision",
        with_spec("timeout: 999999999999999999999h"),
        "p.yaml:10: spec.timeout: bad duration '999999999999999999999h': at most 9223372035s",
    ),
    (
        "duration-beyond-envoy-range",
        with_spec("timeout: 99999999999h"),
        "p.yaml:10: spec.timeout: bad duration '99999999999h': at most 9223372035s",
    ),
    (
        "duration-at-envoy-limit",
        with_spec("connect_timeout: 9223372036s"),
        "p.yaml:10: spec.connect_timeout: bad duration '9223372036s'",
    ),
    (
        "regex-python-accepts-re2-does-not",
        with_spec("rules: [{name: r, match: {headers: {x-user: {regex: '(?<=beta)-user'}}}, traffic: {v4: 100}}]"),
        "p.yaml:10: spec.rules[0].match.headers.x-user.regex: invalid regular expression (RE2 syntax, as Envoy uses):"
        " invalid perl operator: (?<=",
    ),
    (
        "regex-too-large-for-envoy",
        with_spec("rules: [{name: r, match: {headers: {x-user: {regex: 'a{200}'}}}, traffic: {v4: 100}}]"),
        "p.yaml:10: spec.rules[0].match.headers.x-user.regex: regular expression too complex for Envoy",
    ),
    (
        "header-value-with-newline",
        with_spec('rules: [{name: r, match: {headers: {x-user: "a\\nb"}}, traffic: {v4: 100}}]'),
        "p.yaml:10: spec.rules[0].match.headers.x-user.exact: 'a\\nb' contains NUL, CR or LF",
    ),
    (
        "path-prefix-with-nul",
        with_spec('path_prefix: "/a\\0b"'),
        "p.yaml:10: spec.path_prefix: '/a\\x00b' contains NUL, CR or LF",
    ),
    ("percent-not-a-number", with_spec("shadow: [{version: v5, percent: .nan}]"), "p.yaml:10: spec.shadow[0].percent"),
    (
        "ratio-infinite",
        with_spec("canary: {candidate: v4, steps: [10], max_p99_ratio: .inf}"),
        "p.yaml:10: spec.canary.max_p99_ratio",
    ),
    (
        "integer-with-thousands-of-digits",
        with_spec("outlier_detection: {consecutive_5xx: " + "9" * 5000 + "}"),
        "p.yaml:10: spec.outlier_detection.consecutive_5xx: cannot read",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in INVALID])
def test_invalid_policy_is_rejected_with_location(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_independent_errors_come_in_one_run_and_follow_ons_are_left_out() -> None:
    text = (
        BASE.replace('v4: {endpoints: ["127.0.0.1:8201"]}', 'v4: {endpoints: ["127.0.0.1:8201"], weight: 2}').replace(
            'v5: {endpoints: ["127.0.0.1:8301"]}', 'v5: {endpoints: ["nope"]}'
        )
        + "  shadow: [{version: v3}, {version: v5}]\n  timeout: soon\n  traffic_: {}\n"
    )
    text = text.replace("traffic: {v3: 90, v4: 10}", "traffic: {v3: 90, v4: 20}")
    assert errors_of(text) == [
        "p.yaml:7: spec.versions.v4.weight: unknown field (not part of the switchyard/v1 schema; check the spelling)",
        "p.yaml:8: spec.versions.v5.endpoints[0]: unparsable endpoint 'nope': expected host:port",
        "p.yaml:9: spec.traffic: weights must sum to 100 (got 110)",
        "p.yaml:10: spec.shadow[0].version: 'v3' already receives live traffic here: a version cannot shadow itself",
        # not: "spec.shadow[1].version: 'v5' is not declared", which only follows from v5's bad endpoint
        "p.yaml:11: spec.timeout: bad duration 'soon': write a number with a unit, e.g. 250ms, 5s, 1m, 1h",
        "p.yaml:12: spec.traffic_: unknown field (not part of the switchyard/v1 schema; check the spelling)",
    ]
    # A negative weight is reported; the sum it spoils is not reported again.
    assert errors_of(with_spec("", traffic="{v3: 90, v4: -10}")) == [
        "p.yaml:9: spec.traffic.v4: must be >= 0 (got -10)"
    ]


def test_every_error_is_reported_not_just_the_first() -> None:
    text = with_spec("timeout: soon\nshadow: [{version: v9}]", traffic="{v3: 50, v4: 10.5}")
    errors = errors_of(text)
    assert len(errors) >= 2, errors


def test_duplicate_model_names_across_files() -> None:
    with pytest.raises(PolicyErrors) as info:
        load_texts({"a.yaml": BASE, "b.yaml": BASE.replace("127.0.0.1", "127.0.0.2")})
    assert any(
        str(e).startswith("b.yaml:3: metadata.name: duplicate model name 'sentiment' (first defined at a.yaml:1)")
        for e in info.value.errors
    ), info.value.errors


def test_overlapping_host_and_prefix() -> None:
    other = BASE.replace("name: sentiment", "name: other")
    with pytest.raises(PolicyErrors) as info:
        load_texts({"a.yaml": BASE, "b.yaml": other})
    assert any(
        "b.yaml" in str(e) and "spec.hosts[0]: host '*' with path_prefix '/' overlaps model 'sentiment'" in str(e)
        for e in info.value.errors
    )
    # the same host with another prefix is fine: longest prefix wins
    load_texts({"a.yaml": BASE, "b.yaml": other.replace("spec:\n", "spec:\n  path_prefix: /other\n")})


def test_only_one_gateway() -> None:
    gw = "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gw}\n"
    with pytest.raises(PolicyErrors) as info:
        load_texts({"a.yaml": gw + "---\n" + gw})
    assert "a.yaml:5: kind: only one Gateway is allowed (first at a.yaml:1)" in str(info.value)


def test_yaml_1_1_booleans_are_not_keys() -> None:
    # `on:` is a boolean in YAML 1.1; as a key it must stay the string "on".
    policies = load_texts({"p.yaml": with_spec("retries: {attempts: 1, on: [reset]}")})
    assert policies.models[0].value.spec.retries is not None
    assert policies.models[0].value.spec.retries.on == ["reset"]


def test_full_example_compiles_with_defaults() -> None:
    text = with_spec("""
        hosts: ["sentiment.example.com", "*.sentiment.internal"]
        path_prefix: /models/sentiment
        rewrite_prefix: /
        shadow: [{version: v5, percent: 12.5}]
        rules:
          - name: premium
            match: {headers: {X-User-Tier: premium, x-beta: {present: true}}, min_content_length: 10}
            traffic: {v4: 100}
            shadow: []
        pinning: {header: x-model-version, body_field: request.model_version}
        timeout: 1500ms
        retries: {attempts: 2, on: [connect-failure, reset], per_try_timeout: 500ms}
        health_check: {path: /v2/health/ready, interval: 2s}
        outlier_detection: {consecutive_5xx: 3}
        """)
    intent = to_intent(load_texts({"p.yaml": text}))
    assert intent.listener.port == 10000 and intent.listener.address == "0.0.0.0"
    model = intent.model("sentiment")
    assert model.timeout_ms == 1500
    assert model.split.as_dict() == {"v3": 90, "v4": 10}
    assert model.mirrors[0].percent == 12.5
    assert model.rules[0].headers[0].name == "x-user-tier"  # header names are case-insensitive
    assert model.rules[0].mirrors == ()
    assert model.pinning is not None and model.pinning.body_field == ("request", "model_version")
    assert model.retry is not None and model.retry.per_try_timeout_ms == 500
    assert model.health_check is not None and model.health_check.timeout_ms == 1000
    assert model.slow_start_ms == 10_000
    assert model.outlier_detection is not None and model.outlier_detection.base_ejection_ms == 30_000


def test_single_version_needs_no_traffic() -> None:
    text = BASE.replace("  traffic: {v3: 90, v4: 10}\n", "").replace(
        '    v4: {endpoints: ["127.0.0.1:8201"]}\n    v5: {endpoints: ["127.0.0.1:8301"]}\n', ""
    )
    assert to_intent(load_texts({"p.yaml": text})).model("sentiment").split.as_dict() == {"v3": 100}
