"""What every `switchyard` command shares: help with examples, output formats, admin API errors.

Conventions follow kubectl and gh: each command has a description and
examples (``switchyard COMMAND --help``), ``-o table|wide|json|yaml`` picks the
output (``--json`` is short for ``-o json``), and an error is one message in
the command's own terms (the flag or argument the user typed, not the API's
field name), printed once, with what to do about it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from control_plane.cli.client import AdminClient, AdminError, default_url

OUTPUTS = ("table", "wide", "json", "yaml")
Handler = Callable[[AdminClient, argparse.Namespace], Any]
Show = Callable[[Any, bool], None]  # (the API's answer, wide?) -> prints a readable table


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str = "",
    examples: Sequence[str] = (),
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does and shows how to use it."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    return sub.add_parser(
        name,
        help=summary,
        description=description or summary[:1].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )


def output_options(*, wide: bool = True) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    choices = OUTPUTS if wide else tuple(o for o in OUTPUTS if o != "wide")
    parent.add_argument(
        "-o",
        "--output",
        choices=choices,
        default="table",
        help="table (default)" + (", wide (more columns)" if wide else "") + ", or the raw answer as json or yaml",
    )
    parent.add_argument("--json", action="store_true", help="short for -o json")
    return parent


def admin_options() -> argparse.ArgumentParser:
    """--url, --token and the output options: what every admin-API command takes."""
    parent = argparse.ArgumentParser(add_help=False, parents=[output_options()])
    parent.add_argument(
        "--url", metavar="URL", help=f"the control plane's admin API (env SWITCHYARD_URL; default {default_url()})"
    )
    parent.add_argument("--token", metavar="TOKEN", help="bearer token for `serve --tokens` (env SWITCHYARD_TOKEN)")
    return parent


def output_of(args: argparse.Namespace) -> str:
    return "json" if getattr(args, "json", False) else str(getattr(args, "output", "table"))


def emit(result: Any, args: argparse.Namespace, show: Show) -> None:
    output = output_of(args)
    if output == "json":
        print(json.dumps(result, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(result, sort_keys=False, allow_unicode=True), end="")
    else:
        show(result, output == "wide")


def run_admin(args: argparse.Namespace, handler: Handler, show: Show, *, flags: Mapping[str, str] = {}) -> int:
    """Call the admin API; print the answer (0) or one clear error (1).

    ``flags`` maps the API's field locations (``body.percent``) to what the user
    typed (``--percent``), so errors speak the command's language.
    """
    try:
        with AdminClient(args.url, args.token) as client:
            result = handler(client, args)
    except AdminError as exc:
        print(describe_error(args.command, exc, flags), file=sys.stderr)
        return 1
    emit(result, args, show)
    return 0


def describe_error(command: str, exc: AdminError, flags: Mapping[str, str]) -> str:
    if exc.status is None:
        return (
            f"switchyard {command}: {exc.message}\n"
            "  Is the control plane running? Start it with `switchyard up` (or `switchyard serve`),\n"
            "  or point at it with --url URL or SWITCHYARD_URL."
        )
    message = _in_cli_terms(exc.message, flags)
    lines = [f"switchyard {command}: {message}" + (f" (HTTP {exc.status})" if exc.status >= 500 else "")]
    # Details the message does not already say (the API repeats short ones in it).
    lines += [f"  {_in_cli_terms(e, flags)}" for e in exc.errors if _in_cli_terms(e, flags) not in message]
    if exc.status == 401:
        lines.append("  Pass a token with --token or SWITCHYARD_TOKEN (see `switchyard serve --tokens`).")
    return "\n".join(lines)


def relative_to_cwd(text: str) -> str:
    """``/abs/cwd/policies/x.yaml:3: ...`` -> ``policies/x.yaml:3: ...``: paths as the user typed them."""
    prefix = os.getcwd().rstrip(os.sep) + os.sep
    return text[len(prefix) :] if text.startswith(prefix) else text


_LOCATION = re.compile(r"\b(?:body|query|path)(?:\.[\w-]+)*")


def _in_cli_terms(text: str, flags: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        location = match.group()
        for known in sorted(flags, key=len, reverse=True):  # the most specific name first
            if location == known or location.startswith(known + "."):
                rest = location[len(known) + 1 :]
                name = flags[known]
                # "{rest}=PCT": the part below the field names the argument (body.weights.v4 -> v4=PCT).
                return name.format(rest=rest) if "{rest}" in name and rest else name.replace("{rest}", "VERSION")
        return location

    text = _LOCATION.sub(replace, text)
    return text.removeprefix("invalid request: ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned like kubectl's: two spaces apart, None shown as ``-``."""
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
