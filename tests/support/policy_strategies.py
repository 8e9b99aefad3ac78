"""Hypothesis strategies for policy documents: valid ones, then hostile variations of them.

``model_routes()`` draws valid ModelRoute documents (as plain data) that use
every field, with values up to the edges of what validation allows;
``policy_texts()`` turns such documents into YAML text and then damages them
the ways a hostile user, a bad editor or bad luck would: a field replaced by
a value of the wrong type, a huge integer, an odd float, control characters,
deep nesting, a removed or unknown key; YAML tags, anchors and aliases;
duplicated keys; truncation; random bytes.
"""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import strategies as st

NAME_CHARS = string.ascii_lowercase + string.digits
names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z", fullmatch=True)
durations = st.one_of(
    st.sampled_from(["1ms", "250ms", "1s", "1.5s", "5s", "1m", "1h", "9223372035s", "2562047h"]),
    st.integers(1, 10**6).map(lambda n: f"{n}ms"),
)
endpoints = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(1, 65535)).map(lambda t: f"10.0.0.{t[0]}:{t[1]}"),
    st.integers(1, 65535).map(lambda p: f"[::1]:{p}"),
    st.tuples(names, st.integers(1, 65535)).map(lambda t: f"{t[0]}.internal:{t[1]}"),
)
header_names = st.from_regex(r"\Ax-[a-z0-9-]{1,12}\Z", fullmatch=True)
# Characters a header value may hold (no NUL, CR, LF), including non-ASCII.
header_values = st.text(st.characters(blacklist_characters="\x00\r\n", blacklist_categories=("Cs",)), max_size=20)
regexes = st.sampled_from(["beta-.*", "^[a-z]+$", "(a|b)+c?", "[[:alpha:]]{1,5}", "a{95}", "\\d+", "(?i)premium"])
uint32 = st.integers(1, 2**32 - 1)


def splits(versions: list[str]) -> st.SearchStrategy[dict[str, int]]:
    """Integer weights over some of ``versions`` summing to 100."""

    @st.composite
    def draw(d: st.DrawFn) -> dict[str, int]:
        chosen = d(st.lists(st.sampled_from(versions), min_size=1, max_size=len(versions), unique=True))
        cuts = sorted(d(st.lists(st.integers(0, 100), min_size=len(chosen) - 1, max_size=len(chosen) - 1)))
        bounds = [0, *cuts, 100]
        return {v: bounds[i + 1] - bounds[i] for i, v in enumerate(chosen)}

    return draw()


@st.composite
def header_matches(d: st.DrawFn) -> Any:
    kind = d(st.sampled_from(["shorthand", "exact", "prefix", "regex", "present", "absent"]))
    if kind == "shorthand":
        return d(header_values)
    if kind in ("present", "absent"):
        return {kind: True}
    if kind == "regex":
        return {"regex": d(regexes)}
    value = d(header_values.filter(bool)) if kind == "prefix" else d(header_values)
    return {kind: value}


@st.composite
def model_routes(d: st.DrawFn, name: str | None = None, path_prefix: str | None = None) -> dict[str, Any]:
    """A valid ModelRoute document as plain data."""
    versions = d(st.lists(names, min_size=1, max_size=4, unique=True))
    traffic = d(splits(versions))
    spec: dict[str, Any] = {
        "versions": {v: {"endpoints": d(st.lists(endpoints, min_size=1, max_size=3))} for v in versions},
        "traffic": traffic,
    }
    if d(st.booleans()):  # gRPC on every version, or on none
        for v in versions:
            spec["versions"][v]["grpc_endpoints"] = d(st.lists(endpoints, min_size=1, max_size=3))
    unused = [v for v in versions if v not in traffic]
    if unused and d(st.booleans()):
        spec["shadow"] = [
            {"version": v, "percent": d(st.floats(0.0001, 100, allow_nan=False, allow_infinity=False))}
            for v in d(st.lists(st.sampled_from(unused), min_size=1, unique=True))
        ]
    if d(st.booleans()):
        spec["hosts"] = d(
            st.lists(
                st.one_of(
                    st.just("*"),
                    names.map(lambda n: f"{n}.example.com"),
                    names.map(lambda n: f"*.{n}.internal"),
                    st.tuples(names, st.integers(1, 65535)).map(lambda t: f"{t[0]}.svc:{t[1]}"),
                ),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
    spec["path_prefix"] = path_prefix or d(st.sampled_from(["/", "/v1", "/models/x", "/é"]))
    if d(st.booleans()):
        spec["rewrite_prefix"] = d(st.sampled_from(["/", "/api", "/v2/models/x"]))
    if d(st.booleans()):
        rules = []
        for i in range(d(st.integers(1, 3))):
            match: dict[str, Any] = {}
            if d(st.booleans()):
                match["headers"] = d(st.dictionaries(header_names, header_matches(), min_size=1, max_size=3))
            if not match or d(st.booleans()):
                low = d(st.integers(0, 2**63 - 2))
                match["min_content_length"] = low
                if d(st.booleans()):
                    match["max_content_length"] = d(st.integers(low, 2**63 - 2))
            rule: dict[str, Any] = {"name": f"rule-{i}", "match": match, "traffic": d(splits(versions))}
            rule["shadow"] = []  # never inherit a mirror of a version this rule serves
            rules.append(rule)
        spec["rules"] = rules
    if d(st.booleans()):
        pin: dict[str, Any] = {}
        if d(st.booleans()):
            pin["header"] = d(header_names)
        if not pin or d(st.booleans()):
            pin["body_field"] = d(st.sampled_from(["model_version", "options.version", "a.b.c"]))
        spec["pinning"] = pin
    for key in ("timeout", "connect_timeout"):
        if d(st.booleans()):
            spec[key] = d(durations)
    if d(st.booleans()):
        retries: dict[str, Any] = {
            "attempts": d(st.integers(0, 10)),
            "on": d(
                st.lists(
                    st.sampled_from(["5xx", "reset", "connect-failure", "refused-stream", "retriable-4xx"]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
            ),
        }
        if d(st.booleans()):
            retries["per_try_timeout"] = d(durations)
        spec["retries"] = retries
    if d(st.booleans()):
        spec["health_check"] = {
            "path": d(st.sampled_from(["/v2/health/ready", "/healthz", "/ready?full=1"])),
            "interval": d(durations),
            "timeout": d(durations),
            "healthy_threshold": d(uint32),
            "unhealthy_threshold": d(uint32),
        }
    if d(st.booleans()):
        spec["outlier_detection"] = {
            "consecutive_5xx": d(uint32),
            "interval": d(durations),
            "base_ejection_time": d(durations),
            "max_ejection_percent": d(st.integers(1, 100)),
        }
    if d(st.booleans()):
        spec["slow_start"] = d(st.one_of(st.none(), st.builds(lambda w: {"window": w}, durations)))
    if len(versions) > 1 and d(st.booleans()):
        candidate = versions[-1]
        spec["canary"] = {"candidate": candidate, "steps": [10, 50], "interval": "1m", "max_p99_ratio": 1.5}
    labels = d(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2))
    metadata: dict[str, Any] = {"name": name or d(names)}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "switchyard/v1", "kind": "ModelRoute", "metadata": metadata, "spec": spec}


# -- hostile variations --------------------------------------------------------------------------

hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**32, 2**32 - 1, 2**63, 2**63 - 1, -1, 0, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8"), max_size=10).map(lambda s: s + "\x00\n\r"),
    st.sampled_from(["999999999999999999999h", "99999999999h", "0ms", "1.0005s", "-1s", "5 s", "soon", "1e400s"]),
    st.sampled_from(["(?<=beta)-user", "(", "a{1000}", "\\p{L}+", "[z-a]"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 200).map(lambda n: _nested(n)),
)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_paths(v, (*prefix, i)))
    return found


@st.composite
def mutated(d: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one to three fields replaced, removed or joined by an unknown one."""
    for _ in range(d(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = d(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = d(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if action == "replace":
            parent[path[-1]] = d(hostile_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[d(st.text(min_size=1, max_size=8))] = d(hostile_values)
    return doc


_TAGS = [
    "!!float",
    "!!int",
    "!!timestamp",
    "!!binary",
    "!!str",
    "!!bool",
    "!!null",
    "!!set",
    "!!omap",
    "!foo",
    "!!python/object:os.system",
]


@st.composite
def yaml_damage(d: st.DrawFn, text: str) -> str:
    """Damage at the YAML level: tags, anchors and aliases, duplicate keys, truncation, bytes."""
    lines = text.splitlines()
    for _ in range(d(st.integers(1, 3))):
        if not lines:
            break
        i = d(st.integers(0, len(lines) - 1))
        line = lines[i]
        kind = d(
            st.sampled_from(["tag", "anchor-alias", "recursive", "duplicate", "truncate", "bytes", "bomb", "indent"])
        )
        if kind == "tag" and ": " in line:
            key, _, value = line.partition(": ")
            lines[i] = f"{key}: {d(st.sampled_from(_TAGS))} {value}"
        elif kind == "anchor-alias" and ": " in line and i > 0:
            key, _, value = line.partition(": ")
            lines[i] = f"{key}: &a{i} {value}"
            j = d(st.integers(0, len(lines) - 1))
            if ": " in lines[j]:
                other, _, _ = lines[j].partition(": ")
                lines[j] = f"{other}: *a{i}"
        elif kind == "recursive" and line.rstrip().endswith(":"):
            lines[i] = f"{line.rstrip()} &loop [*loop]"
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "truncate":
            cut = d(st.integers(0, len(text)))
            return text[:cut]
        elif kind == "bytes":
            junk = d(
                st.text(
                    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
                    min_size=1,
                    max_size=5,
                )
            )
            pos = d(st.integers(0, len(line)))
            lines[i] = line[:pos] + junk + line[pos:]
        elif kind == "bomb":
            levels = ["b0: &b0 [x, x, x, x, x, x, x, x, x]"] + [
                f"b{n}: &b{n} [" + ", ".join([f"*b{n - 1}"] * 9) + "]" for n in range(1, 7)
            ]
            lines[i:i] = levels
        elif kind == "indent":
            lines[i] = " " * d(st.integers(1, 5)) + line
    return "\n".join(lines) + "\n"


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 16)


@st.composite
def policy_texts(d: st.DrawFn) -> str:
    """A policy file: a valid document, often mutated, then often damaged as YAML."""
    doc = d(model_routes())
    if d(st.integers(0, 9)) < 8:
        doc = d(mutated(doc))
    text = dump(doc)
    if d(st.booleans()):
        text = d(yaml_damage(text))
    return text
