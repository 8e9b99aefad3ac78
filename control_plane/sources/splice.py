"""Write accepted changes back to the policy file they came from.

The file stays the single source of truth, so an API change must look like a
careful human edit: comments, key order, quoting and flow/block style survive,
and ``git diff`` shows only the lines that changed.

ruamel.yaml's round trip keeps comments and styles but normalises some layout
(indentation of block sequences, spacing after colons, ``...`` markers). So we
never write ruamel's output whole: we dump the document set twice, unchanged
and changed, diff those two dumps (they share the same normalisation), and
splice only the differing lines into the original text. If a changed line
cannot be located in the original, we fall back to ruamel's full output, which
is still correct, just less minimal. Either way the result is re-parsed and
checked before it is returned.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError


class StoreError(Exception):
    """The policy text could not be edited (the document is missing or not editable)."""


Shadow = tuple[str, float]


def _yaml() -> YAML:
    y = YAML()  # round-trip mode
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap long flow mappings onto several lines
    y.indent(mapping=2, sequence=4, offset=2)  # the layout of our examples; splicing hides any other
    return y


def _dump(y: YAML, docs: list[Any]) -> str:
    out = io.StringIO()
    y.dump_all(docs, out)
    return out.getvalue()


def edit_routing(text: str, model: str, traffic: Mapping[str, int], shadow: Sequence[Shadow]) -> str:
    """``text`` with model ``model``'s ``spec.traffic`` and ``spec.shadow`` set as given."""
    y = _yaml()
    try:
        before = _dump(y, list(y.load_all(text)))
        docs = list(y.load_all(text))
    except YAMLError as exc:
        raise StoreError(f"cannot parse the policy file for editing: {exc}") from None
    spec = _find_spec(docs, model)
    _set_traffic(spec, traffic, _key_texts(text, model))
    _set_shadow(spec, shadow)
    after = _dump(y, docs)
    edited = _splice(text, before, after)
    if edited is None or not _same_data(y, edited, after):
        edited = after
    if "\r\n" in text:
        edited = edited.replace("\r\n", "\n").replace("\n", "\r\n")
    return edited


def _find_spec(docs: list[Any], model: str) -> CommentedMap:
    for doc in docs:
        if (
            isinstance(doc, CommentedMap)
            and doc.get("kind") == "ModelRoute"
            and isinstance(doc.get("metadata"), Mapping)
            and str(doc["metadata"].get("name")) == model  # as text: ruamel reads a name `123` as a number
        ):
            spec = doc.get("spec")
            if isinstance(spec, CommentedMap):
                return spec
            raise StoreError(f"model {model!r} has no spec mapping to edit")
    raise StoreError(f"model {model!r} is not defined in this file")


def _key_texts(text: str, model: str) -> dict[str, list[str]]:
    """The keys of the model's spec.versions and spec.traffic as written, in order.

    ruamel reads YAML 1.2, where a version named ``1`` or ``1e3`` is a number;
    the policy loader and the API take keys verbatim ("1", "1e3"). The keys'
    text, by position, tells which ruamel key is which version.
    """
    for document in yaml.compose_all(text, Loader=yaml.CSafeLoader):
        if not isinstance(document, yaml.MappingNode):
            continue
        fields = {k.value: v for k, v in document.value if isinstance(k, yaml.ScalarNode)}
        metadata, spec = fields.get("metadata"), fields.get("spec")
        names = dict((k.value, v.value) for k, v in metadata.value) if isinstance(metadata, yaml.MappingNode) else {}
        if names.get("name") == model and isinstance(spec, yaml.MappingNode):
            found = {k.value: v for k, v in spec.value if isinstance(k, yaml.ScalarNode)}
            return {
                key: [k.value for k, _ in node.value] if isinstance(node, yaml.MappingNode) else []
                for key, node in ((key, found.get(key)) for key in ("versions", "traffic"))
            }
    return {"versions": [], "traffic": []}


def _set_traffic(spec: CommentedMap, traffic: Mapping[str, int], texts: Mapping[str, list[str]]) -> None:
    # Keys the split gains go where the versions' declaration order puts them, so
    # the split reads like the versions list whatever order the request named them in.
    rank = {v: i for i, v in enumerate(texts["versions"])}
    ordered = sorted(traffic, key=lambda v: rank.get(v, len(rank)))
    current = spec.get("traffic")
    if isinstance(current, CommentedMap):
        # Edit in place: the mapping keeps its style, its comments and the order of its keys.
        named = dict(zip(list(current), texts["traffic"], strict=False))  # ruamel key -> its text
        for key in [k for k in current if named.get(k, str(k)) not in traffic]:
            del current[key]
        present = {named.get(k, str(k)): k for k in current}
        for version in ordered:
            if version in present:
                current[present[version]] = traffic[version]
                continue
            later = [
                i
                for i, k in enumerate(current)
                if rank.get(named.get(k, str(k)), len(rank)) > rank.get(version, len(rank))
            ]
            current.insert(later[0] if later else len(current), version, traffic[version])
        return
    _put(spec, "traffic", CommentedMap((v, traffic[v]) for v in ordered), after="versions")


def _put(spec: CommentedMap, key: str, value: CommentedMap | CommentedSeq, *, after: str) -> None:
    """Set ``spec[key]`` to a new flow-style value: in place if present, else right after ``after``."""
    value.fa.set_flow_style()
    if key in spec:
        spec[key] = value
        return
    keys = list(spec)
    spec.insert(keys.index(after) + 1 if after in keys else len(keys), key, value)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _set_shadow(spec: CommentedMap, shadow: Sequence[Shadow]) -> None:
    current = spec.get("shadow")
    wanted = {version: _number(percent) for version, percent in shadow}
    if not wanted:
        if "shadow" in spec:
            del spec["shadow"]
        return
    if not isinstance(current, CommentedSeq):
        _put(spec, "shadow", CommentedSeq([_shadow_entry(v, p) for v, p in wanted.items()]), after="traffic")
        return
    # Edit entries in place so their style and comments stay.
    for i in reversed(range(len(current))):
        entry = current[i]
        version = str(entry.get("version")) if isinstance(entry, Mapping) else None
        if version not in wanted:
            del current[i]
    present = set()
    for entry in current:
        version = str(entry["version"])
        present.add(version)
        if wanted[version] == 100 and "percent" not in entry:
            continue  # 100 is the default: do not add a line that says nothing
        entry["percent"] = wanted[version]
    flow = current.fa.flow_style() or any(isinstance(e, CommentedMap) and e.fa.flow_style() for e in current)
    for version, percent in wanted.items():
        if version not in present:
            current.append(_shadow_entry(version, percent, flow=flow))


def _shadow_entry(version: str, percent: int | float, *, flow: bool = True) -> CommentedMap:
    entry = CommentedMap([("version", version), ("percent", percent)])
    if flow:
        entry.fa.set_flow_style()
    return entry


def _same_data(y: YAML, a: str, b: str) -> bool:
    try:
        same: bool = _plain(list(y.load_all(a))) == _plain(list(y.load_all(b)))
        return same
    except YAMLError:
        return False


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return [(str(k), _plain(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _splice(original: str, before: str, after: str) -> str | None:
    """Apply the ``before`` -> ``after`` line changes to ``original``; None if they do not map."""
    orig = original.splitlines(keepends=True)
    if orig and not orig[-1].endswith("\n"):
        orig[-1] += "\n"  # ruamel always ends with a newline; compare like with like
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    # Which line of `original` each line of `before` is (only lines ruamel left untouched).
    where: dict[int, int] = {}
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, orig, old, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                where[j1 + k] = i1 + k
    out = list(orig)
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    for tag, b1, b2, c1, c2 in reversed(ops):
        if tag == "equal":
            continue
        if b1 < b2:
            if any(k not in where for k in range(b1, b2)):
                return None
            a1, a2 = where[b1], where[b2 - 1] + 1
            if a2 - a1 != b2 - b1:  # the lines to replace are not together in the original
                return None
        elif b1 > 0 and b1 - 1 in where:
            a1 = a2 = where[b1 - 1] + 1
        elif b1 in where:
            a1 = a2 = where[b1]
        else:
            return None
        out[a1:a2] = new[c1:c2] + _layout_kept(orig[a1:a2], new[c1:c2])
    return "".join(out)


def _layout_kept(removed: list[str], added: list[str]) -> list[str]:
    """Comment and blank lines that ruamel dropped along with a node they were attached to.

    They are not data, and the user put them there: keep them (a comment after a
    deleted block, the blank line that separated it from the next key).
    """
    comments = [line for line in removed if line.lstrip().startswith("#") and line not in added]
    trailing: list[str] = []
    for line in reversed(removed):
        if line.strip():
            break
        trailing.append(line)
    if added and not added[-1].strip():
        trailing = []
    return comments + trailing


# What write_atomic's temporary files are called: "." + the target's name + mkstemp's
# eight random characters + ".tmp".
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temp_files(paths: Iterable[Path]) -> list[Path]:
    """Delete temporary files a killed ``write_atomic`` left below ``paths``; return them.

    Call it before anything writes (at start-up): a live write's file matches too.
    """
    removed: list[Path] = []
    for root in paths:
        if not root.is_dir():
            continue
        for directory, _, names in os.walk(root):
            for name in names:
                if _TEMP_NAME.match(name):
                    stale = Path(directory, name)
                    with contextlib.suppress(OSError):
                        stale.unlink()
                        removed.append(stale)
    return removed


def write_atomic(path: str | Path, text: str) -> None:
    """Replace the file's contents all at once: readers see the old or the new file, never half.

    A temporary file in the same directory (a rename is atomic only within a file
    system) is fsynced, given the original's mode, renamed over it, and the
    directory is fsynced so the rename itself survives a crash. The temporary
    name starts with '.', which the policy loader and watcher ignore.
    """
    target = Path(os.path.realpath(path))  # edit the file a symlink points to, keep the link
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse; the rename is done anyway
        pass
    finally:
        os.close(fd)
