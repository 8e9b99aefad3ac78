"""Bounded parsing and held removals: no policy input can take long or delete by accident."""

from __future__ import annotations

import pytest

from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import load_texts
from control_plane.policy.removals import removal_errors
from control_plane.policy.yaml_source import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_FILE_BYTES, MAX_VALUES
from tests.unit.test_policy_validation import BASE, errors_of, with_spec

FLEET = """\
apiVersion: switchyard/v1
kind: Fleet
metadata: {name: sentiment}
spec:
  versions:
    v3: {model: sentiment/sentiment-v3}
"""


def alias_bomb(levels: int = 7, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one `width` times (~500 bytes)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_rejected_before_it_expands() -> None:
    bomb = alias_bomb()
    assert len(bomb) < 600
    text = BASE.replace(
        "metadata: {name: sentiment}", "metadata:\n  name: sentiment\n  labels:\n    " + bomb.replace("\n", "\n    ")
    )
    (error,) = errors_of(text)
    assert "document too large: more than 100,000 values (counting every use of an alias)" in error, error
    assert error.startswith("p.yaml:"), error


def test_aliases_within_the_limit_are_expanded() -> None:
    text = with_spec(
        "rules:\n  - &r {name: a, match: {headers: {x-a: y}}, traffic: {v4: 100}}\n  - {name: b, match: *m, traffic: {v4: 100}}"
    ).replace("{headers: {x-a: y}}", "&m {headers: {x-a: y}}")
    rules = load_texts({"p.yaml": text}).models[0].value.spec.rules
    assert rules[0].match == rules[1].match


def test_nesting_is_bounded() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    (error,) = errors_of(with_spec(f"rules: {deep}"))
    assert f"nested deeper than {MAX_DEPTH} levels" in error, error


def test_a_file_too_large_is_rejected_unread() -> None:
    text = BASE + "# " + "x" * MAX_FILE_BYTES + "\n"
    assert errors_of(text) == [
        f"p.yaml:1: file too large: {len(text.encode()):,} bytes (the limit is {MAX_FILE_BYTES:,})"
    ]


def test_a_document_too_large_is_rejected_and_the_others_load() -> None:
    big = BASE.replace("name: sentiment", "name: big") + "  # " + "x" * MAX_DOCUMENT_BYTES + "\n  timeout: 5s\n"
    errors = errors_of(BASE.replace("traffic", "timeout: 5s\n  traffic") + "---\n" + big)
    assert len(errors) == 1 and "document too large" in errors[0] and errors[0].startswith("p.yaml:12:"), errors


def test_value_counting_includes_every_document_value() -> None:
    many = ", ".join(str(i) for i in range(MAX_VALUES))
    (error,) = errors_of(with_spec(f"retries: {{attempts: 1, on: [{many}]}}"))
    assert "more than 100,000 values" in error


def test_a_broken_model_does_not_also_break_its_fleet() -> None:
    # The Fleet names a model whose document is invalid: only the model's error is news.
    assert errors_of(with_spec("timeout: !!float soon") + "---\n" + FLEET) == [
        "p.yaml:10: spec.timeout: cannot read 'soon' as !!float: could not convert string to float: 'soon'"
    ]
    assert errors_of(with_spec("rules: &loop [*loop]") + "---\n" + FLEET) == [
        "p.yaml:10: spec.rules[0]: recursive alias: an anchor is used inside itself"
    ]
    # ...while a Fleet of a model that does not exist at all is still an error.
    assert any("no ModelRoute named 'sentiment'" in e for e in errors_of(FLEET))


def test_emptying_a_file_that_declared_models_is_held() -> None:
    other = BASE.replace("name: sentiment", "name: other").replace("spec:\n", "spec:\n  path_prefix: /other\n")
    before = load_texts({"a.yaml": BASE, "b.yaml": other})
    for emptied in ("", "\n\n", "# nothing here\n", "---\n", "--- \n...\n"):
        after = load_texts({"a.yaml": emptied, "b.yaml": other})
        (error,) = removal_errors(before, after, where="policies", allow_empty=False)
        assert str(error).startswith("a.yaml:1: the file has no documents now, which would remove model 'sentiment'")
    # Deleting the file removes its model; so does moving the model to another file.
    assert removal_errors(before, load_texts({"b.yaml": other}), where="policies", allow_empty=False) == []
    moved = load_texts({"a.yaml": "", "b.yaml": other + "---\n" + BASE})
    assert removal_errors(before, moved, where="policies", allow_empty=False) == []
    # A file that still has a document (even one that removed the model) is an explicit edit.
    gateway = "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: edge}\n"
    assert removal_errors(before, load_texts({"a.yaml": gateway, "b.yaml": other}), where="p", allow_empty=False) == []


def test_removing_every_model_needs_allow_empty() -> None:
    before = load_texts({"a.yaml": BASE})
    after = load_texts({})
    (error,) = removal_errors(before, after, where="policies", allow_empty=False)
    assert str(error).startswith("policies: no ModelRoute is left in the policy set, which would remove every model")
    assert "switchyard serve --allow-empty" in str(error)
    assert removal_errors(before, after, where="policies", allow_empty=True) == []
    assert removal_errors(None, after, where="policies", allow_empty=False) == []  # nothing served yet


def test_removal_of_one_model_among_others_is_an_ordinary_edit() -> None:
    two = (
        BASE + "---\n" + BASE.replace("name: sentiment", "name: other").replace("spec:\n", "spec:\n  path_prefix: /o\n")
    )
    assert removal_errors(load_texts({"a.yaml": two}), load_texts({"a.yaml": BASE}), where="p", allow_empty=False) == []


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02", b"\xff\xfe\x00", bytes(range(256))])
def test_binary_garbage_is_malformed_yaml(garbage: bytes) -> None:
    with pytest.raises(PolicyErrors) as info:
        load_texts({"p.yaml": garbage.decode("latin-1")})
    assert all(str(e).startswith("p.yaml:") for e in info.value.errors)
