"""`switchyard status|shift|promote|rollback|shadow|envoys|audit|history`: the admin API from a shell.

Exit status 0 when the server accepted, 1 when it refused or could not be
reached (one message on stderr). ``-o json|yaml`` prints the server's answer as is.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from control_plane.cli.client import AdminClient, AdminError
from control_plane.cli.common import (
    Handler,
    Show,
    add_command,
    admin_options,
    relative_to_cwd,
    run_admin,
    table,
)

# Where the API's field names meet the arguments users type.
_CHANGE_FLAGS = {
    "path.name": "MODEL",
    "body.weights": "{rest}=PCT",
    "body.percent": "--percent",
    "body.version": "VERSION",
    "query.version": "VERSION",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = admin_options()

    def add(
        name: str, handler: Handler, show: Show, *, summary: str, description: str = "", examples: Sequence[str] = ()
    ) -> argparse.ArgumentParser:
        p = add_command(sub, name, summary=summary, description=description, examples=examples, parents=[common])
        p.set_defaults(func=lambda args: run_admin(args, handler, show, flags=_CHANGE_FLAGS))
        return p

    p = add(
        "status",
        _status,
        _show_status,
        summary="show models as the control plane serves them",
        description="Each model's split, effective split (after readiness), mirrors and unready versions.\n"
        "With MODEL: its rules and every endpoint's readiness too. A banner says when the policy\n"
        "files on disk were rejected and the served configuration is the last good one.",
        examples=["switchyard status", "switchyard status sentiment", "switchyard status -o wide"],
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="one model (default: all)")

    p = add(
        "shift",
        _shift,
        _show_change,
        summary="set a model's default split",
        description="Set the default split: the whole new split, integer percentages summing to 100.\n"
        "The change is validated as a whole policy set, written back to the policy file (comments\n"
        "kept) and pushed to Envoy; it is refused if the model changed since this command read it.",
        examples=[
            "switchyard shift sentiment sentiment-v3=50 sentiment-v4=50",
            "switchyard shift sentiment sentiment-v4=100",
        ],
    )
    p.add_argument("model", metavar="MODEL", help="the model (its metadata.name)")
    p.add_argument(
        "weights", nargs="+", type=_weight, metavar="VERSION=PCT", help="a version and its share, e.g. sentiment-v4=10"
    )

    p = add(
        "promote",
        _promote,
        _show_change,
        summary="send 100%% of a model's default split to one version (and stop mirroring it)",
        examples=["switchyard promote sentiment sentiment-v4"],
    )
    p.add_argument("model", metavar="MODEL", help="the model")
    p.add_argument("version", metavar="VERSION", help="the version that gets all of the default split")

    p = add(
        "rollback",
        _rollback,
        _show_change,
        summary="go back to the split (and mirrors) before the last change",
        description="Go back to the split and mirrors the model had before its last change (from its\n"
        "history); rolling back twice undoes the rollback.",
        examples=["switchyard rollback sentiment"],
    )
    p.add_argument("model", metavar="MODEL", help="the model")

    p = add(
        "shadow",
        _shadow,
        _show_change,
        summary="mirror a share of live traffic to a version, or stop (--off)",
        description="Mirror a share of the model's live requests to VERSION. Clients only ever see\n"
        "production's answer; `switchyard shadow-report MODEL` compares the two.",
        examples=[
            "switchyard shadow sentiment sentiment-v5 --percent 50",
            "switchyard shadow sentiment sentiment-v5 --off",
            "switchyard shadow sentiment --off              # stop every mirror",
        ],
    )
    p.add_argument("model", metavar="MODEL", help="the model")
    p.add_argument("version", nargs="?", metavar="VERSION", help="the version to mirror to (optional with --off)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--percent", type=float, metavar="N", help="share of live requests mirrored, 0 < N <= 100")
    group.add_argument("--off", action="store_true", help="stop mirroring to VERSION, or to every version")

    add(
        "envoys",
        _envoys,
        _show_envoys,
        summary="connected Envoys: what each runs, pending pushes, last NACK",
        description="Every Envoy connected over ADS: the snapshot it runs completely, what it has\n"
        "ACKed per resource type (-o wide), pushes it has not ACKed yet, and its last NACK with\n"
        "Envoy's error text.",
        examples=["switchyard envoys", "switchyard envoys -o wide"],
    )

    p = add(
        "audit",
        _audit,
        _show_audit,
        summary="the audit log of changes, newest first",
        examples=["switchyard audit", "switchyard audit --model sentiment --limit 10"],
    )
    p.add_argument("--model", metavar="MODEL", help="only this model's records")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N records (default 50)")

    p = add(
        "history",
        _history,
        _show_history,
        summary="every split a model has had, who set it and when",
        examples=["switchyard history sentiment"],
    )
    p.add_argument("model", metavar="MODEL", help="the model")


def _weight(text: str) -> tuple[str, int]:
    version, sep, pct = text.partition("=")
    if not sep or not version or not pct.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected VERSION=PCT with an integer percentage, got {text!r}")
    return version, int(pct)


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


def _split(traffic: dict[str, Any]) -> str:
    return ", ".join(f"{v} {w}%" for v, w in traffic.items()) or "-"


def _mirrors(shadow: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['version']} {s['percent']:g}%" for s in shadow) or "-"


def _shown_path(path: str | None) -> str:
    """A file below the working directory as a relative path, as the user would type it."""
    return relative_to_cwd(path) if path else "-"


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _show_status(result: dict[str, Any], wide: bool) -> None:
    models = result.get("models", [result])
    policy = result.get("policy") or {}
    if policy.get("files_valid") is False:
        # The files on disk say something else than what is served: say so first.
        rejected = policy.get("last_rejected") or {}
        print(f"! the policy files were rejected at {_when(rejected.get('at'))}; serving the last good configuration:")
        for error in rejected.get("errors", [])[:10]:
            print(f"!   {relative_to_cwd(error)}")
        print()
    print(f"snapshot {result.get('snapshot_version') or '-'}")
    headers = ["MODEL", "TRAFFIC", "EFFECTIVE", "SHADOW", "UNREADY"] + (["RULES", "FILE"] if wide else [])
    rows = []
    for m in models:
        row = [
            m["name"],
            _split(m["traffic"]),
            _split(m["effective_traffic"]) if m["effective_traffic"] != m["traffic"] else "(same)",
            _mirrors(m["shadow"]),
            ", ".join(v["name"] for v in m["versions"] if not v["ready"]) or "-",
        ]
        if wide:
            row += [", ".join(r["name"] for r in m["rules"]) or "-", f"{_shown_path(m.get('file'))}:{m.get('line')}"]
        rows.append(row)
    print(table(headers, rows))
    if "models" not in result or wide:
        print()
        for m in models:
            _show_endpoints(m)
    if "models" not in result:
        print(f"\nfile {_shown_path(result['file'])}:{result['line']}  etag {result['etag']}")
        for rule in result["rules"]:
            print(f"rule {rule['name']}: {_split(rule['traffic'])}")


def _show_endpoints(model: dict[str, Any]) -> None:
    rows = [
        [
            model["name"],
            v["name"],
            e["address"],
            "-" if e["ready"] is None else ("ready" if e["ready"] else "NOT READY"),
            e.get("last_error") or "-",
        ]
        for v in model["versions"]
        for e in v["endpoints"]
    ]
    print(table(["MODEL", "VERSION", "ENDPOINT", "READY", "LAST ERROR"], rows))


def _show_change(result: dict[str, Any], wide: bool) -> None:
    if not result["changed"]:
        print(f"{result['model']}: unchanged ({_split(result['new']['traffic'])})")
        return
    old, new = result["old"], result["new"]
    print(f"{result['model']}: {result['action']} accepted, written to {_shown_path(result['file'])}")
    if old["traffic"] != new["traffic"]:
        print(f"  traffic  {_split(old['traffic'])}  ->  {_split(new['traffic'])}")
    if old["shadow"] != new["shadow"]:
        print(f"  shadow   {_mirrors(old['shadow'])}  ->  {_mirrors(new['shadow'])}")
    print(f"  snapshot {result['snapshot_version']}")


def _show_envoys(result: dict[str, Any], wide: bool) -> None:
    types = ("Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration")
    headers = ["NODE", "MODE", "CONNECTED", "IN SYNC", "SYNCED SNAPSHOT", "PENDING", "LAST NACK"]
    if wide:
        headers[5:5] = [f"ACKED {t.upper()}" for t in ("cds", "eds", "lds", "rds")]
    rows = []
    for n in result["envoys"]:
        nack = n.get("last_nack")
        row = [
            n["node_id"],
            n["mode"],
            "yes" if n["connected"] else "no",
            "yes" if n["in_sync"] else "no",
            n["synced_snapshot"],
            ", ".join(n["pending"]) or "-",
            f"{nack['type']}: {nack['error']}" if nack else "-",
        ]
        if wide:
            row[5:5] = [n["acked"].get(t) for t in types]
        rows.append(row)
    print(f"snapshot {result.get('snapshot_version') or '-'}")
    print(table(headers, rows))


def _show_audit(result: dict[str, Any], wide: bool) -> None:
    rows = [
        [
            r.get("time"),
            r.get("who"),
            r.get("action"),
            r.get("model"),
            _outcome(r),
            _split(r["new"]["traffic"]) if r.get("new") else (r.get("reason") or "-")[:80],
        ]
        for r in result["records"]
    ]
    print(table(["TIME (UTC)", "WHO", "ACTION", "MODEL", "RESULT", "NEW SPLIT / REASON"], rows))


def _outcome(record: dict[str, Any]) -> str:
    outcome = record.get("outcome") or ("accepted" if record.get("accepted") else "rejected")
    if outcome != "rejected":
        return str(outcome)
    why = record.get("error") or record.get("status")  # records written before error kinds have a status
    return f"rejected ({why})"


def _show_history(result: dict[str, Any], wide: bool) -> None:
    rows = [
        [_when(e["at"]), e["who"], e["action"], _split(e["traffic"]), _mirrors(e["shadow"]), e["snapshot_version"]]
        for e in result["history"]
    ]
    print(table(["WHEN", "WHO", "ACTION", "TRAFFIC", "SHADOW", "SNAPSHOT"], rows))
