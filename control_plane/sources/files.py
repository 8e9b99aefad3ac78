"""Policies in files: every ``*.yaml`` / ``*.yml`` below the given paths, written back in place."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from control_plane.policy.errors import PolicyError, PolicyErrors
from control_plane.policy.loader import PolicySet, load_texts
from control_plane.sources import Shadow
from control_plane.sources.splice import edit_routing, write_atomic

POLICY_SUFFIXES = (".yaml", ".yml")


class FileSource:
    """A ``PolicySource`` and ``WriteBack`` over files and directories (origins are file paths)."""

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]

    @property
    def name(self) -> str:
        return str(self.paths[0]) if self.paths else "policies"

    @property
    def locations(self) -> list[str]:
        return [str(p) for p in self.paths]

    def read(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        errors: list[PolicyError] = []
        for path in policy_files(self.paths):
            try:
                texts[str(path)] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(PolicyError(str(path), 1, (), f"cannot read policy file: {exc}"))
        if errors:
            raise PolicyErrors(errors)
        return texts

    def edit_routing(
        self, origin: str, text: str, model: str, traffic: Mapping[str, int], shadow: Sequence[Shadow]
    ) -> str:
        return edit_routing(text, model, traffic, shadow)

    def write(self, origin: str, text: str) -> None:
        write_atomic(origin, text)


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """Read and validate the files below ``paths``; raise ``PolicyErrors`` listing every problem."""
    return load_texts(FileSource(paths).read())


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every *.yaml / *.yml below named directories, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Sorted like Path objects (by their parts), without hidden files or directories.
            below = sorted(_walk(str(path), ()))
            found.extend(path.joinpath(*parts) for parts in below)
        else:
            found.append(path)
    return found


def _walk(directory: str, parts: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    # os.scandir instead of Path.rglob: listing 10,000 policy files took 0.15 s with
    # rglob and is_file(), a third of a no-op reload. Like rglob (Python 3.11), it
    # does not descend into symlinked directories; symlinked files count.
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if not entry.is_symlink():
                    yield from _walk(entry.path, (*parts, entry.name))
            elif entry.name.endswith(POLICY_SUFFIXES) and entry.is_file():
                yield (*parts, entry.name)
