"""`switchyard status|shift|promote|rollback|shadow|envoys|audit|history`: the admin API from a shell.

Exit status 0 when the server accepted, 1 when it refused or could not be
reached (its message on stderr). ``--json`` prints the server's answer as is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from control_plane.client import AdminClient, AdminError, default_url

Handler = Callable[[AdminClient, argparse.Namespace], Any]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"admin API URL (env SWITCHYARD_URL; default {default_url()})")
    common.add_argument("--token", help="bearer token (env SWITCHYARD_TOKEN)")
    common.add_argument("--json", action="store_true", help="print the server's JSON answer")

    def add(name: str, help_text: str, handler: Handler, show: Callable[[Any], None]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(func=lambda args: _run(args, handler, show))
        return p

    p = add("status", "show models (or one model) as the control plane serves them", _status, _show_status)
    p.add_argument("model", nargs="?")

    p = add("shift", "set a model's split: shift MODEL VERSION=PCT...", _shift, _show_change)
    p.add_argument("model")
    p.add_argument("weights", nargs="+", type=_weight, metavar="VERSION=PCT")

    p = add("promote", "send 100%% of a model's traffic to one version", _promote, _show_change)
    p.add_argument("model")
    p.add_argument("version")

    p = add("rollback", "go back to the split before the last change", _rollback, _show_change)
    p.add_argument("model")

    p = add("shadow", "mirror traffic to a version (--percent N) or stop (--off)", _shadow, _show_change)
    p.add_argument("model")
    p.add_argument("version", nargs="?", help="with --off and no version: stop every mirror")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--percent", type=float)
    group.add_argument("--off", action="store_true")

    add("envoys", "connected Envoys: ACKed versions, pending pushes, last NACK", _envoys, _show_envoys)

    p = add("audit", "the audit log, newest first", _audit, _show_audit)
    p.add_argument("--model")
    p.add_argument("--limit", type=int, default=50)

    p = add("history", "every split a model has had", _history, _show_history)
    p.add_argument("model")


def _weight(text: str) -> tuple[str, int]:
    version, sep, pct = text.partition("=")
    if not sep or not version or not pct.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected VERSION=PCT with an integer percentage, got {text!r}")
    return version, int(pct)


def _run(args: argparse.Namespace, handler: Handler, show: Callable[[Any], None]) -> int:
    try:
        with AdminClient(args.url, args.token) as client:
            result = handler(client, args)
    except AdminError as exc:
        status = f" ({exc.status})" if exc.status else ""
        print(f"switchyard {args.command}: error{status}: {exc.message}", file=sys.stderr)
        for error in exc.errors:
            if error != exc.message:
                print(f"  {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)
    return 0


# -- handlers ---------------------------------------------------------------------------------


def _status(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.model(a.model) if a.model else c.models()


def _shift(c: AdminClient, a: argparse.Namespace) -> Any:
    weights: dict[str, int] = {}
    for version, pct in a.weights:
        if version in weights:
            raise AdminError(f"{version} is given twice")
        weights[version] = pct
    return c.shift(a.model, weights)


def _promote(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.promote(a.model, a.version)


def _rollback(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.rollback(a.model)


def _shadow(c: AdminClient, a: argparse.Namespace) -> Any:
    if a.off:
        return c.shadow_off(a.model, a.version)
    if a.version is None:
        raise AdminError("shadow needs a VERSION with --percent")
    return c.shadow(a.model, a.version, a.percent)


def _envoys(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.envoys()


def _audit(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.audit(a.model, a.limit)


def _history(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.history(a.model)


# -- readable output --------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _split(traffic: dict[str, Any]) -> str:
    return ", ".join(f"{v} {w}%" for v, w in traffic.items()) or "-"


def _mirrors(shadow: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['version']} {s['percent']:g}%" for s in shadow) or "-"


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _show_status(result: dict[str, Any]) -> None:
    models = result.get("models", [result])
    print(f"snapshot {result.get('snapshot_version') or '-'}")
    rows = [
        [
            m["name"],
            _split(m["traffic"]),
            _split(m["effective_traffic"]) if m["effective_traffic"] != m["traffic"] else "(same)",
            _mirrors(m["shadow"]),
            ", ".join(v["name"] for v in m["versions"] if not v["ready"]) or "-",
        ]
        for m in models
    ]
    print(table(["MODEL", "TRAFFIC", "EFFECTIVE", "SHADOW", "UNREADY"], rows))
    if "models" not in result:
        print(f"\nfile {result['file']}:{result['line']}  etag {result['etag']}")
        for rule in result["rules"]:
            print(f"rule {rule['name']}: {_split(rule['traffic'])}")


def _show_change(result: dict[str, Any]) -> None:
    if not result["changed"]:
        print(f"{result['model']}: unchanged ({_split(result['new']['traffic'])})")
        return
    old, new = result["old"], result["new"]
    print(f"{result['model']}: {result['action']} accepted, written to {result['file']}")
    print(f"  traffic  {_split(old['traffic'])}  ->  {_split(new['traffic'])}")
    if old["shadow"] != new["shadow"]:
        print(f"  shadow   {_mirrors(old['shadow'])}  ->  {_mirrors(new['shadow'])}")
    print(f"  snapshot {result['snapshot_version']}")


def _show_envoys(result: dict[str, Any]) -> None:
    rows = []
    for n in result["envoys"]:
        nack = n.get("last_nack")
        rows.append(
            [
                n["node_id"],
                n["mode"],
                "yes" if n["connected"] else "no",
                "yes" if n["in_sync"] else "no",
                n["synced_snapshot"],
                ", ".join(n["pending"]) or "-",
                f"{nack['type']}: {nack['error']}" if nack else "-",
            ]
        )
    print(f"snapshot {result.get('snapshot_version') or '-'}")
    print(table(["NODE", "MODE", "CONNECTED", "IN SYNC", "SYNCED SNAPSHOT", "PENDING", "LAST NACK"], rows))


def _show_audit(result: dict[str, Any]) -> None:
    rows = [
        [
            r.get("time"),
            r.get("who"),
            r.get("action"),
            r.get("model"),
            "accepted" if r.get("accepted") else f"rejected ({r.get('status')})",
            _split(r["new"]["traffic"]) if r.get("new") else (r.get("reason") or "-")[:80],
        ]
        for r in result["records"]
    ]
    print(table(["TIME (UTC)", "WHO", "ACTION", "MODEL", "RESULT", "NEW SPLIT / REASON"], rows))


def _show_history(result: dict[str, Any]) -> None:
    rows = [
        [_when(e["at"]), e["who"], e["action"], _split(e["traffic"]), _mirrors(e["shadow"]), e["snapshot_version"]]
        for e in result["history"]
    ]
    print(table(["WHEN", "WHO", "ACTION", "TRAFFIC", "SHADOW", "SNAPSHOT"], rows))
