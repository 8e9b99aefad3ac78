"""A misspelt pin field or header is answered with a Warning, not silently ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from model_services.api.near_miss import MAX_DISTANCE, closest, distance

Make = Callable[..., Any]
words = st.text(alphabet="abcdefx_-", max_size=12)


@given(words, words)
def test_distance_is_a_capped_symmetric_edit_distance(a: str, b: str) -> None:
    d = distance(a, b)
    assert d == distance(b, a)
    assert (d == 0) == (a == b)
    assert d <= MAX_DISTANCE + 1
    assert distance(a, a + b[:1]) <= 1


@given(st.text(alphabet="abcdefghijklmnop_", min_size=6, max_size=14), st.data())
def test_one_typo_of_a_name_is_recognised(name: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(name) - 1))
    typo = data.draw(
        st.sampled_from([name[:i] + name[i + 1 :], name[:i] + "z" + name[i:], name[:i] + "z" + name[i + 1 :]])
    )
    if typo != name:
        assert closest(typo, [name, "text"]) == name


def test_unrelated_names_are_not_near_misses() -> None:
    assert closest("model_name", ["model_version", "text"]) is None
    assert closest("tenant", ["text"]) is None
    assert closest("x-user-tier", ["x-model-version"]) is None
    assert closest("model_version", ["model_version"]) is None


async def test_a_misspelt_pin_field_or_header_gets_a_warning(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.post("/v1/predict", json={"text": "good", "model_verison": "fake-v1"})
        assert r.status_code == 200
        assert r.headers["warning"] == (
            "299 - \"body field 'model_verison' is not a field of this API; did you mean 'model_version'? (not pinned)\""
        )
        r = await h.client.post("/v1/predict", json={"text": "good"}, headers={"x-model-verison": "fake-v1"})
        assert (
            "header 'x-model-verison' is not one Switchyard routes on; did you mean 'x-model-version'?"
            in r.headers["warning"]
        )
        # Routing on other body fields keeps working, without warnings.
        r = await h.client.post("/v1/predict", json={"text": "good", "tenant": "acme", "model_version": "fake-v1"})
        assert r.status_code == 200 and "warning" not in r.headers
        r = await h.client.post("/v1/predict/batch", json={"texts": ["good"], "model_verion": "x"})
        assert r.status_code == 200 and "did you mean 'model_version'" in r.headers["warning"]


async def test_the_pin_names_follow_the_policy(make_harness: Make) -> None:
    async with make_harness(pin_header="x-version", pin_body_field="options.version") as h:
        r = await h.client.post(
            "/v1/predict", json={"text": "good", "optoins": {"version": "v"}}, headers={"x-versoin": "v"}
        )
        warning = r.headers["warning"]
        assert "did you mean 'options'?" in warning and "did you mean 'x-version'?" in warning
