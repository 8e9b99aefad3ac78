"""The README's examples as tests: ```console blocks, parsed, run, and their output compared.

A console block holds commands and, under each, the output it prints:

    $ switchyard validate policies/
    ok: 1 model(s) in 1 file(s)
    $ curl -s localhost:10000/v1/predict -H 'content-type: application/json' \\
        -d '{"text": "ok"}'
    {"label":"negative","confidence":...,"model_version":"sentiment-v3","latency_ms":...}

* ``$ `` starts a command; a line ending in ``\\`` continues it, and so do lines
  starting with ``> `` (bash's prompt for the rest of a heredoc).
* The lines up to the next command are its expected output. ``...`` inside a
  line stands for any text (a latency, an id, a confidence); a line that is only
  ``...`` stands for any number of lines. A command shown with no output may
  print anything.
* ``# exits N`` at the end of a command: it must exit N (default 0).
* A block right after ``<!-- readme: skip REASON -->`` is not run; the reason
  says why (it needs Docker, it runs for minutes, CI runs it already) and
  where else it is tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```(\S*)\s*$")
_SKIP = re.compile(r"^<!-- readme: skip (?P<reason>.+?) -->\s*$")
_EXITS = re.compile(r"\s+# exits (\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Command:
    text: str  # what bash runs (continuations joined)
    line: int  # README line of the "$ "
    expected: tuple[str, ...]  # output lines, with "..." wildcards
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class Block:
    language: str
    line: int  # README line of the opening fence
    body: tuple[str, ...]
    skip: str | None = None  # the reason, for a block that is not run
    commands: tuple[Command, ...] = field(default=())


def blocks(readme: Path) -> list[Block]:
    """Every fenced block of the README, console blocks with their commands parsed."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = _SKIP.match(previous)
        language = opening.group(1)
        commands = tuple(parse_console(body, start + 2)) if language == "console" else ()
        found.append(Block(language, start + 1, tuple(body), skip["reason"] if skip else None, commands))
    return found


def parse_console(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    i = 0
    while i < len(body):
        if not body[i].startswith("$ "):
            raise ValueError(f"README line {first_line + i}: console output before any command: {body[i]!r}")
        line = first_line + i
        parts = [body[i][2:]]
        i += 1
        while i < len(body) and (parts[-1].endswith("\\") or body[i].startswith("> ")):
            parts.append(body[i][2:] if body[i].startswith("> ") else body[i])
            i += 1
        expected: list[str] = []
        while i < len(body) and not body[i].startswith("$ "):
            expected.append(body[i])
            i += 1
        text = "\n".join(parts)
        exit_code = 0
        last = _EXITS.search(parts[-1])
        if last:
            exit_code = int(last.group(1))
        commands.append(Command(text, line, tuple(expected), exit_code))
    return commands


def matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """Whether ``actual`` lines fit ``expected`` ("..." in a line: any text; alone: any lines)."""
    if not expected:
        return True
    return _match(list(expected), [a.rstrip() for a in actual])


def _match(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_match(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and _line(head.rstrip(), actual[0]) and _match(rest, actual[1:])


def _line(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None
