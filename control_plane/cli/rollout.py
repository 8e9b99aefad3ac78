"""`switchyard rollout start|pause|resume|abort|promote|status MODEL` and `switchyard shadow-report MODEL`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from control_plane.cli.client import AdminClient
from control_plane.cli.common import add_command, admin_options, run_admin, table

VERBS = ("start", "pause", "resume", "abort", "promote")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = admin_options()
    p = add_command(
        sub,
        "rollout",
        summary="canary rollouts: start|pause|resume|abort|promote|status MODEL",
        description="Progressive delivery of spec.canary.candidate: the candidate's share steps up\n"
        "while Envoy's error rate and latency for it stay within the canary's gates, and goes back\n"
        "to the baseline when they do not.\n\n"
        "  start    begin stepping (the model's policy needs a spec.canary block)\n"
        "  pause    hold the current step        resume   continue with a fresh interval\n"
        "  abort    all traffic back to the baseline now\n"
        "  promote  all traffic to the candidate now\n"
        "  status   phase, step, weight, deadline and the latest checks",
        examples=["switchyard rollout start sentiment", "switchyard rollout status sentiment"],
        parents=[common],
    )
    p.add_argument("verb", choices=[*VERBS, "status"], metavar="VERB", help=", ".join([*VERBS, "status"]))
    p.add_argument("model", metavar="MODEL", help="the model")
    p.set_defaults(func=lambda args: run_admin(args, _rollout, show_rollout))

    p = add_command(
        sub,
        "shadow-report",
        summary="production vs shadow answers for a model",
        description="How the mirrored versions' answers compare with production's: label agreement,\n"
        "confidence differences, latency of each side, shadow errors and recent disagreements.",
        examples=["switchyard shadow-report sentiment"],
        parents=[common],
    )
    p.add_argument("model", metavar="MODEL", help="the model")
    p.set_defaults(func=lambda args: run_admin(args, _shadow_report, show_shadow_report))


def _rollout(c: AdminClient, a: argparse.Namespace) -> Any:
    if a.verb == "status":
        return c.json("GET", f"/v1/models/{a.model}/rollout")
    return c.json("POST", f"/v1/models/{a.model}/rollout/{a.verb}")


def _shadow_report(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.json("GET", f"/v1/models/{a.model}/shadow/report")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def show_rollout(r: dict[str, Any], wide: bool = False) -> None:
    steps = ", ".join(f"{w}%" for w in r["plan"]["weights"])
    print(f"{r['model']}: {r['phase']}  {r['candidate']} at {r['weight']}% (baseline {r['baseline']})")
    print(f"  steps {steps}; check every {r['plan']['interval_s']:g} s; failed checks in a row {r['failed_checks']}")
    if r.get("deadline"):
        print(f"  deadline {time.strftime('%H:%M:%S', time.localtime(r['deadline']))}")
    if r.get("reason"):
        print(f"  reason   {r['reason']}")
    rows = [
        [
            time.strftime("%H:%M:%S", time.localtime(c["at"])),
            f"{c['weight']}%",
            c["candidate"]["requests"],
            _pct(c["candidate"]["error_rate"]),
            _ms(c["candidate"]["p99_ms"]),
            _ms(c["baseline"]["p99_ms"]) if c.get("baseline") else "-",
            "pass" if c["passed"] else "FAIL: " + "; ".join(c["reasons"]),
        ]
        for c in r.get("checks", [])
    ]
    if rows:
        print(table(["CHECK", "WEIGHT", "REQUESTS", "5XX", "P99 MS", "BASE P99", "RESULT"], rows))


def show_shadow_report(r: dict[str, Any], wide: bool = False) -> None:
    if not r["shadows"]:
        print(f"{r['model']}: no shadow answers compared yet ({r['pending']} waiting for their pair)")
        return
    rows = []
    for s in r["shadows"]:
        lat = s["latency_ms"]
        rows.append(
            [
                s["version"],
                s["requests_compared"],
                _pct(s["agreement_rate"]),
                s["confidence_diff"]["mean"],
                s["confidence_diff"]["p95"],
                f"{_ms(lat['production']['p50'])}/{_ms(lat['production']['p99'])}",
                f"{_ms(lat['shadow']['p50'])}/{_ms(lat['shadow']['p99'])}",
                s["shadow_errors"],
            ]
        )
    print(
        table(
            ["SHADOW", "COMPARED", "AGREE", "|DCONF| MEAN", "|DCONF| P95", "PROD P50/P99", "SHADOW P50/P99", "ERRORS"],
            rows,
        )
    )
    for s in r["shadows"]:
        for d in s["disagreements"][:5]:
            text = (d.get("input") or "")[:60]
            print(f"  {s['version']}: {d['production']['label']} -> {d['shadow']['label']}  {text!r}")
