"""Models sharing one host by path prefix, through a real Envoy: the virtual host's prefix matcher.

Several models share "*": a "/" catch-all, "/a" and its raw-prefix neighbour
"/ab", and "/sentiment" (rules, header and body pinning, a shadow, a rewrite)
with "/sentiment/next" nested under it. Rewrites replace the prefix path element by
path element, whether they end in "/" or not. Prefixes match on path-segment
boundaries, and a request that hits a model's prefix without a boundary
("/abc", "/sentiment/nextx") reaches the model it lies under.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import ControlPlane, Envoy, free_port, wait_for
from tests.support.upstream import VersionUpstream

pytestmark = pytest.mark.integration

UPSTREAMS = ("root-v1", "a-v1", "ab-v1", "s-v3", "s-v4", "s-v5", "next-v1")


class PrefixStack:
    def __init__(self, workdir: Path) -> None:
        self.upstreams = {name: VersionUpstream(name) for name in UPSTREAMS}
        policies = workdir / "policies"
        policies.mkdir()
        port = free_port()
        (policies / "models.yaml").write_text(self.policy(port))
        self.control_plane = ControlPlane(policies, workdir).start()
        self.envoy = Envoy(self.control_plane.xds_port, workdir).start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def endpoint(self, version: str) -> str:
        return f'{{endpoints: ["{self.upstreams[version].address}"]}}'

    def policy(self, port: int) -> str:
        def model(name: str, prefix: str, versions: list[str], extra: str = "") -> str:
            listed = ", ".join(f"{v}: {self.endpoint(v)}" for v in versions)
            return (
                f"apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n"
                f"  path_prefix: {prefix}\n  versions: {{{listed}}}\n{extra}"
            )

        return "---\n".join(
            [
                f"apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec: {{port: {port}}}\n",
                model("root", "/", ["root-v1"], "  rewrite_prefix: /r\n"),
                model("a", "/a", ["a-v1"], "  rewrite_prefix: /\n"),
                model("ab", "/ab", ["ab-v1"], "  rewrite_prefix: /inner/\n"),
                model(
                    "sentiment",
                    "/sentiment",
                    ["s-v3", "s-v4", "s-v5"],
                    "  rewrite_prefix: /v1\n"
                    "  traffic: {s-v3: 100, s-v4: 0}\n"
                    "  shadow: [{version: s-v5, percent: 100}]\n"
                    "  rules: [{name: premium, match: {headers: {x-user-tier: premium}}, traffic: {s-v4: 100}}]\n"
                    "  pinning: {header: x-model-version, body_field: model_version}\n",
                ),
                model("sentiment-next", "/sentiment/next", ["next-v1"]),
            ]
        )

    def post(self, path: str, **request: Any) -> tuple[int, str | None, str | None]:
        """(status, version that answered, path the upstream saw)."""
        request.setdefault("json", {"text": "hello"})
        response = self.client.post(path, **request)
        seen = response.json().get("path") if response.status_code == 200 else None
        return response.status_code, response.headers.get("x-model-version"), seen

    def close(self) -> None:
        self.client.close()
        self.envoy.stop()
        self.control_plane.stop()
        for upstream in self.upstreams.values():
            upstream.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefixStack]:
    stack = PrefixStack(tmp_path_factory.mktemp("prefix"))
    try:
        wait_for(lambda: stack.post("/sentiment/next")[1] == "next-v1", what="Envoy to serve the routes")
        yield stack
    finally:
        stack.close()


def test_shared_host_uses_a_prefix_matcher(stack: PrefixStack) -> None:
    dump = httpx.get(f"{stack.envoy.admin}/config_dump", params={"resource": "dynamic_route_configs"}).json()
    (config,) = [c["route_config"] for c in dump["configs"]]
    (vhost,) = config["virtual_hosts"]
    assert "routes" not in vhost
    keys = vhost["matcher"]["matcher_tree"]["prefix_match_map"]["map"]
    assert set(keys) == {"/", "/a", "/ab", "/sentiment", "/sentiment/next"}


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/", "root-v1"),
        ("/v1/predict", "root-v1"),
        ("/a", "a-v1"),
        ("/a/", "a-v1"),
        ("/a/v1/predict", "a-v1"),
        ("/a?x=1", "a-v1"),
        ("/ab", "ab-v1"),
        ("/ab/v1/predict", "ab-v1"),
        ("/abc", "root-v1"),  # not "/ab": the matcher picks "/ab", whose routes then hand over to "/"
        ("/ax", "root-v1"),
        ("/a-b/x", "root-v1"),
        ("/sentimentfoo", "root-v1"),
        ("/sentiment/next", "next-v1"),
        ("/sentiment/next/v1/predict", "next-v1"),
    ],
)
def test_segment_boundaries(stack: PrefixStack, path: str, version: str) -> None:
    assert stack.post(path)[:2] == (200, version)


def test_rewrite_inside_a_prefix_routed_model(stack: PrefixStack) -> None:
    assert stack.post("/sentiment/models/x/infer") == (200, "s-v3", "/v1/models/x/infer")
    assert stack.post("/sentiment") == (200, "s-v3", "/v1")
    assert stack.post("/sentiment?verbose=1") == (200, "s-v3", "/v1?verbose=1")
    # Under "/sentiment" but not "/sentiment/next": the sentiment model, with its rewrite.
    assert stack.post("/sentiment/nextx/y") == (200, "s-v3", "/v1/nextx/y")
    assert stack.post("/sentiment/next/x") == (200, "next-v1", "/sentiment/next/x")


@pytest.mark.parametrize(
    ("path", "seen"),
    [
        ("/a/v1/predict", "/v1/predict"),  # rewrite "/": never "//v1/predict"
        ("/a", "/"),
        ("/a?x=1", "/?x=1"),
        ("/ab/x/y", "/inner/x/y"),  # a rewrite ending in "/"
        ("/ab", "/inner/"),
        ("/v1/predict", "/r/v1/predict"),  # the "/" model's rewrite: never "/rv1/predict"
        ("/abc", "/r/abc"),  # handed over to "/", with its rewrite
    ],
)
def test_rewrites_replace_whole_path_elements(stack: PrefixStack, path: str, seen: str) -> None:
    assert stack.post(path)[2] == seen


@pytest.mark.parametrize("path", ["/sentiment/v1/predict", "/sentiment/nextx"])
def test_rules_and_pinning_inside_a_prefix_routed_model(stack: PrefixStack, path: str) -> None:
    assert stack.post(path, headers={"x-user-tier": "premium"})[:2] == (200, "s-v4")
    for version in ("s-v4", "s-v5", "s-v3"):
        assert stack.post(path, headers={"x-model-version": version})[:2] == (200, version)
        # json_to_metadata clears the route cache; the route is re-resolved through the matcher.
        assert stack.post(path, json={"text": "x", "model_version": version})[:2] == (200, version)
    unknown = stack.client.post(path, headers={"x-model-version": "s-v9"}, json={})
    assert unknown.status_code == 404 and "known versions: s-v3, s-v4, s-v5" in unknown.json()["error"]
    assert stack.client.post(path, json={"model_version": "nope"}).status_code == 404


def test_versioned_paths_under_a_prefix_with_its_rewrite(stack: PrefixStack) -> None:
    for version in ("s-v4", "s-v5"):  # both outside the split (s-v3: 100)
        path = f"/sentiment/v2/models/sentiment/versions/{version}/infer"
        assert stack.post(path) == (200, version, f"/v1/v2/models/sentiment/versions/{version}/infer")
    unknown = stack.client.post("/sentiment/v2/models/sentiment/versions/s-v9/infer", json={})
    assert unknown.status_code == 404 and "known versions: s-v3, s-v4, s-v5" in unknown.json()["error"]
    # The root model's own versioned path, and the path of a model under a longer prefix.
    assert stack.post("/v2/models/root/versions/root-v1/ready")[:2] == (200, "root-v1")
    assert stack.post("/sentiment/next/v2/models/sentiment-next/versions/next-v1")[:2] == (200, "next-v1")


def test_body_pinning_stays_off_for_models_without_it(stack: PrefixStack) -> None:
    # The filter is disabled on these routes, so the field is not even parsed.
    assert stack.post("/a/v1/predict", json={"model_version": "nope"})[:2] == (200, "a-v1")
    assert stack.post("/sentiment/next/x", json={"model_version": "nope"})[:2] == (200, "next-v1")


def test_shadow_inside_a_prefix_routed_model(stack: PrefixStack) -> None:
    shadow = stack.upstreams["s-v5"]
    before = shadow.count("shadow")
    for _ in range(20):
        assert stack.post("/sentiment/v1/predict")[:2] == (200, "s-v3")  # never the shadow's answer
    deadline = time.monotonic() + 10
    while shadow.count("shadow") < before + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shadow.count("shadow") == before + 20
