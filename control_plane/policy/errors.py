"""Policy errors that point at the exact place a user must fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
FieldPath = tuple[PathPart, ...]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: Sequence[PathPart]) -> str:
    """``("spec", "rules", 0, "match")`` -> ``spec.rules[0].match``.

    A key that is not a plain name (empty, spaces, dots, other characters) is
    quoted, ``spec[" "]``, so every path is readable and unambiguous.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            out += f"[{json.dumps(part)}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in one policy document, rendered as ``file:line: field.path: message``."""

    file: str
    line: int
    path: FieldPath
    message: str

    def __str__(self) -> str:
        # Line 0: the error is about the file (or directory) as a whole.
        origin = f"{self.file}:{self.line}" if self.line > 0 else self.file
        where = format_path(self.path)
        return f"{origin}: {where}: {self.message}" if where else f"{origin}: {self.message}"


class PolicyErrors(Exception):
    """Raised when a policy set is rejected; carries every error found, not just the first."""

    def __init__(self, errors: Iterable[PolicyError]) -> None:
        self.errors: tuple[PolicyError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
