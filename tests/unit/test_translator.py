"""The translator's memo and fragment joining: what the controller pushes after any history
of edits and readiness changes is exactly what a fresh translation produces, in
protobuf's own deterministic encoding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.ir import RoutingIntent
from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.sources.files import load_policies
from control_plane.translate import CLUSTER, MESSAGE_TYPES, ROUTE, Resources, Translator, translate
from control_plane.translate import clusters as clusters_module
from control_plane.translate import routes as routes_module
from control_plane.translate.names import cluster_name
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot
from tests.support.policy_strategies import dump, model_routes

DATA = Path(__file__).parent / "testdata" / "in"
CASES = sorted(p.stem for p in DATA.glob("*.yaml"))
EXAMPLES = int(os.environ.get("SWITCHYARD_TRANSLATOR_EXAMPLES", "60"))


def case_intent(case: str) -> RoutingIntent:
    return to_intent(load_policies([DATA / f"{case}.yaml"]))


def all_clusters(intent: RoutingIntent) -> list[str]:
    return [cluster_name(m.name, v.name) for m in intent.models for v in m.versions]


def assert_canonical(resources: Resources) -> None:
    """Joined fragments decode, and re-encode to the very same bytes: protobuf's deterministic encoding."""
    for type_url, by_name in resources.by_type.items():
        for name, body in by_name.items():
            decoded = MESSAGE_TYPES[type_url].FromString(body)
            assert decoded.SerializeToString(deterministic=True) == body, (type_url, name)


@pytest.mark.parametrize("case", CASES)
def test_pushed_bytes_are_protobufs_own_encoding(case: str) -> None:
    intent = case_intent(case)
    assert_canonical(translate(intent))
    assert_canonical(translate(intent, frozenset(all_clusters(intent)[:1])))


@st.composite
def histories(d: st.DrawFn) -> list[tuple[str, frozenset[str]]]:
    """Successive policy texts (some models redrawn, some kept) and unready sets.

    Hosts come from a small pool, so an edit to one model can move another
    (unchanged) model between a virtual host of its own and a shared one.
    """
    count = d(st.integers(1, 4))
    pool = ["a.example.com", "b.example.com", "*"]

    def draw_model(i: int) -> str:
        doc = d(model_routes(name=f"m{i}", path_prefix=f"/m{i}" if i else "/"))
        doc["spec"]["hosts"] = d(st.lists(st.sampled_from(pool), min_size=1, unique=True))
        return dump(doc)

    docs = [draw_model(i) for i in range(count)]
    steps: list[tuple[str, frozenset[str]]] = []
    for _ in range(d(st.integers(2, 5))):
        for i in d(st.lists(st.integers(0, count - 1), unique=True, max_size=count)):
            docs[i] = draw_model(i)
        text = "---\n".join(docs)
        names = all_clusters(to_intent(load_texts({"p.yaml": text})))
        steps.append((text, frozenset(d(st.lists(st.sampled_from(names), unique=True)))))
    return steps


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_after_any_history_the_translator_pushes_what_a_fresh_translation_would(
    history: list[tuple[str, frozenset[str]]],
) -> None:
    translator = Translator()
    for text, unready in history:
        intent = to_intent(load_texts({"p.yaml": text}))
        for readiness in (unready, frozenset(), unready):  # a flap and back
            remembered = translator.translate(intent, readiness)
            fresh = translate(intent, readiness)
            assert remembered == fresh
            assert_canonical(remembered)


def test_an_edit_to_one_model_rebuilds_only_that_model(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [dump(model_doc) for model_doc in (_plain_model(i) for i in range(50))]
    translator = Translator()
    translator.translate(to_intent(load_texts({"p.yaml": "---\n".join(docs)})))
    built: list[str] = []
    real_clusters, real_routes = clusters_module.ModelClusters.of, routes_module.ModelRoutes.of

    def count_clusters(model: object) -> object:
        built.append(f"clusters {model.name}")  # type: ignore[attr-defined]
        return real_clusters(model)  # type: ignore[arg-type]

    def count_routes(model: object, unready_versions: frozenset[str]) -> object:
        built.append(f"routes {model.name}")  # type: ignore[attr-defined]
        return real_routes(model, unready_versions)  # type: ignore[arg-type]

    monkeypatch.setattr(clusters_module.ModelClusters, "of", count_clusters)
    monkeypatch.setattr(routes_module.ModelRoutes, "of", count_routes)
    edited = _plain_model(7)
    edited["spec"]["traffic"] = {"a": 10, "b": 90}
    docs[7] = dump(edited)
    # Reloaded from text: new objects, equal values; the memo is keyed by value.
    intent = to_intent(load_texts({"p.yaml": "---\n".join(docs)}))
    translator.translate(intent)
    assert built == ["clusters m7", "routes m7"]
    built.clear()
    translator.translate(intent, frozenset({cluster_name("m3", "a")}))
    assert built == ["routes m3"]  # readiness changes routes only


def _plain_model(i: int) -> dict[str, object]:
    return {
        "apiVersion": "switchyard/v1",
        "kind": "ModelRoute",
        "metadata": {"name": f"m{i}"},
        "spec": {
            "hosts": [f"m{i}.example.com"],
            "versions": {"a": {"endpoints": ["10.0.0.1:80"]}, "b": {"endpoints": ["10.0.0.2:80"]}},
            "traffic": {"a": 100},
        },
    }


def test_unchanged_entries_keep_their_version_objects() -> None:
    intent = case_intent("rich")
    first = Snapshot.build(translate(intent))
    again = Snapshot.build(translate(intent), previous=first)
    assert again.version == first.version
    for type_url, entries in again.entries.items():
        for name, entry in entries.items():
            assert entry is first.entries[type_url][name]


def test_the_consistency_check_rejects_a_route_to_a_missing_cluster() -> None:
    resources = translate(case_intent("rich"))
    broken = Resources(
        by_type={**resources.by_type, CLUSTER: {}},
        eds_clusters=resources.eds_clusters,
        route_targets=resources.route_targets,
        rds_names=resources.rds_names,
    )
    with pytest.raises(InconsistentSnapshot, match="unknown cluster"):
        Snapshot.build(broken)


def _path_matches(match: rc.RouteMatch, path: str) -> bool:
    if match.HasField("path_separated_prefix"):  # Envoy ignores the query string here
        bare = path.split("?", 1)[0]
        return bare == match.path_separated_prefix or bare.startswith(match.path_separated_prefix + "/")
    return path.startswith(match.prefix)


def _envoy_pick(vhost: rc.VirtualHost, path: str) -> str | None:
    """The route a plain request (no pins, no rule headers) gets, following Envoy's rules:
    a linear scan of ``routes``, or the longest matching key of the prefix map (and never a
    shorter one) followed by a linear scan of that key's RouteList."""
    routes = list(vhost.routes)
    if vhost.HasField("matcher"):
        keys = [k for k in vhost.matcher.matcher_tree.prefix_match_map.map if path.startswith(k)]
        if not keys:
            return None
        route_list = rc.RouteList()
        assert vhost.matcher.matcher_tree.prefix_match_map.map[max(keys, key=len)].action.typed_config.Unpack(
            route_list
        )
        routes = list(route_list.routes)
    for route in routes:
        if _path_matches(route.match, path) and not route.match.headers and not route.match.dynamic_metadata:
            return route.name
    return None


def test_prefix_matcher_picks_the_longest_prefix_on_a_segment_boundary() -> None:
    intent = case_intent("shared-prefixes")
    config = route_pb2.RouteConfiguration.FromString(translate(intent).by_type[ROUTE]["switchyard_routes"])
    vhosts = {tuple(v.domains): v for v in config.virtual_hosts}
    assert not vhosts[("*",)].routes and not vhosts[("solo.example.com",)].HasField("matcher")
    shared = sorted(m.path_prefix for m in intent.models if "*" in m.hosts)
    hosts = {("*",): shared, ("other.example.com",): ["/x", "/x/y"], ("*.example.org",): ["/x/y"]}
    suffixes = ["", "/", "/z", "z", "?q=1", "?q=/a", "/?q", "-b", "/b", "/bz", "/b/c", "/b/c/d/e", "/~x"]
    by_prefix = {m.path_prefix: m.name for m in intent.models if "*" in m.hosts}
    for domains, prefixes in hosts.items():
        owner = {m.path_prefix: m.name for m in intent.models if domains[0] in m.hosts}
        for path in sorted({p + s for p in [*prefixes, "/zzz"] for s in suffixes}):
            bare = path.split("?", 1)[0]
            under = [p for p in owner if p == "/" or bare == p or bare.startswith(p + "/")]
            want = f"{owner[max(under, key=len)]}/default" if under else None
            assert _envoy_pick(vhosts[domains], path) == want, (domains, path)
    assert _envoy_pick(vhosts[("*",)], "/ab") == f"{by_prefix['/ab']}/default"
    assert _envoy_pick(vhosts[("*",)], "/abc") == f"{by_prefix['/']}/default"
    assert _envoy_pick(vhosts[("*",)], "/a/b/c") == f"{by_prefix['/a/b']}/default"
    assert _envoy_pick(vhosts[("*",)], "/a/b/c/dz") == f"{by_prefix['/a/b']}/default"


_DIGEST_SCRIPT = """
import hashlib, pathlib, sys
from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.translate import translate
digest = hashlib.sha256()
for case in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    resources = translate(to_intent(load_texts({"p.yaml": case.read_text()})))
    for type_url, by_name in sorted(resources.by_type.items()):
        for name, body in sorted(by_name.items()):
            digest.update(type_url.encode() + name.encode() + body)
print(digest.hexdigest())
"""


def test_the_bytes_do_not_depend_on_the_process() -> None:
    """Snapshot versions are content hashes: a restarted control plane (another hash seed,
    so another order of protobuf map entries unless serialised deterministically) must
    produce the very same bytes, or every Envoy would be sent a "new" configuration."""
    cases = Path(__file__).parent / "testdata" / "in"
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT, str(cases)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1, digests
