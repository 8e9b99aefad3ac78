"""Switchyard routes traffic between versions of ML models.

Routing policies are YAML files (canary splits, shadow mirrors, header, input-size and
pinning rules); the control plane turns them into Envoy configuration and streams it to
Envoy, which splits, mirrors and routes requests across the model services.

Start here:
  switchyard up                                    run everything on this machine
  switchyard traffic --duration 10                 a live table of where requests go
  switchyard shift sentiment sentiment-v3=50 sentiment-v4=50
  switchyard validate policies/                    check policy files before they go live

Admin commands (status, shift, promote, rollback, shadow, history, envoys, audit, rollout,
shadow-report) talk to the control plane's admin API: --url (env SWITCHYARD_URL, default
http://127.0.0.1:18001) and --token (env SWITCHYARD_TOKEN). `switchyard COMMAND --help`
describes each command, with examples.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from control_plane.cli import admin, jobs, rollout
from control_plane.cli.common import add_command
from control_plane.engine.controller import translation_errors
from control_plane.k8s.crd import crds_yaml
from control_plane.local import traffic as local_traffic
from control_plane.local import up as local_up
from control_plane.policy.compile import to_intent
from control_plane.policy.errors import PolicyErrors
from control_plane.sources.files import load_policies
from control_plane.translate import translate
from control_plane.translate.render import resources_by_type
from control_plane.xds.bootstrap import bootstrap_yaml

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _version() -> str:
    try:
        return importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "(not installed)"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def cmd_validate(args: argparse.Namespace) -> int:
    # The same checks as a reload: the loader's, then a translation into Envoy
    # resources that must serialise (what Envoy will be sent).
    try:
        policies = load_policies(args.paths)
        problems = translation_errors(policies, to_intent(policies))
    except PolicyErrors as exc:
        problems = list(exc.errors)
    for error in problems:
        print(error)
    if problems:
        return 1
    print(f"ok: {len(policies.models)} model(s) in {len(policies.files)} file(s)")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    try:
        intent = to_intent(load_policies(args.paths))
    except PolicyErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    rendered = resources_by_type(translate(intent))
    if args.format == "json":
        print(json.dumps(rendered, indent=2))
    else:
        print(yaml.safe_dump(rendered, sort_keys=False), end="")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    host, port = args.xds
    print(
        bootstrap_yaml(
            host,
            port,
            admin_port=args.admin_port,
            admin_address=args.admin_address,
            node_id=args.node_id,
            delta=args.delta,
            admin_url=args.admin_url,
        ),
        end="",
    )
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    print(crds_yaml(), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from control_plane.plane import ServeOptions
    from control_plane.server import load_overrides, serve

    overrides = None
    if args.overrides:
        try:
            overrides = load_overrides(Path(args.overrides))
        except ValueError as exc:
            print(f"switchyard serve: {exc}", file=sys.stderr)
            return 2

    if bool(args.policies) == args.kubernetes:
        print("switchyard serve: give either --policies DIR or --kubernetes", file=sys.stderr)
        return 2
    kubernetes = None
    if args.kubernetes:
        from control_plane.k8s.mode import KubernetesOptions

        kubernetes = KubernetesOptions(
            namespace=args.namespace or _pod_namespace(),
            identity=args.identity or os.environ.get("POD_NAME") or socket.gethostname(),
            lease_name=args.lease_name,
            lease_duration_s=args.lease_duration_s,
            renew_deadline_s=args.lease_duration_s * 2 / 3,  # client-go's 15 s / 10 s / 2 s, scaled
            retry_period_s=args.lease_duration_s * 2 / 15,
        )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe otherwise
    options = ServeOptions(
        policies=[Path(p) for p in args.policies or ()],
        kubernetes=kubernetes,
        xds_address=args.xds_address,
        xds_port=args.xds_port,
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        watch=not args.no_watch,
        overrides=overrides,
        tokens=Path(args.tokens) if args.tokens else None,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        envoy_admin=tuple(args.envoy_admin or ()),
        shadow_inputs=not args.shadow_no_inputs,
        allow_empty=args.allow_empty,
    )
    return asyncio.run(serve(options))


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and less than a day, not {text}")
    return value


def _pod_namespace() -> str:
    """$POD_NAMESPACE, else the namespace of the Pod's service account, else ``default``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


# Other modules add their subcommands here (the admin-API client commands, `up`, ...).
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    local_up.register,
    local_traffic.register,
    admin.register,
    rollout.register,
    jobs.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"switchyard {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(
        sub,
        "validate",
        summary="check policy files; one line per error",
        description="Check policy files as the control plane would before serving them: YAML, schema,\n"
        "cross-document rules, and a translation into Envoy resources. Prints\n"
        "`file:line: field.path: message` per problem and exits 1, or `ok` and exits 0.",
        examples=["switchyard validate policies/", "switchyard validate policies/sentiment.yaml"],
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories (*.yaml, *.yml, recursively)")
    p.set_defaults(func=cmd_validate)

    p = add_command(
        sub,
        "render",
        summary="print the Envoy resources the policies translate to",
        description="Print the Envoy resources (clusters, endpoints, listeners, routes) the policies\n"
        "translate to, in push order, as YAML or JSON.",
        examples=["switchyard render policies/", "switchyard render policies/ --format json"],
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml", help="output format (default yaml)")
    p.set_defaults(func=cmd_render)

    p = add_command(
        sub,
        "bootstrap",
        summary="print an Envoy bootstrap (YAML) that connects to the control plane",
        description="Print an Envoy bootstrap that connects to the control plane over ADS; start Envoy\n"
        "with it (`envoy -c FILE`).",
        examples=[
            "switchyard bootstrap --xds 127.0.0.1:18000 > /tmp/envoy.yaml",
            "switchyard bootstrap --xds control-plane:18000 --admin-address 0.0.0.0 --node-id envoy-edge --delta",
        ],
    )
    p.add_argument("--xds", type=_host_port, required=True, metavar="HOST:PORT", help="the control plane's xDS address")
    p.add_argument("--admin-port", type=int, default=9901, metavar="PORT", help="Envoy's admin port (default 9901)")
    p.add_argument(
        "--admin-address", default="127.0.0.1", metavar="ADDR", help="Envoy admin listener (0.0.0.0 in containers)"
    )
    p.add_argument("--node-id", default="switchyard-envoy", metavar="ID", help="the node id Envoy announces")
    p.add_argument("--delta", action="store_true", help="incremental (delta) ADS instead of state of the world")
    p.add_argument(
        "--admin-url",
        help="how the control plane reaches this Envoy's admin endpoint for canary statistics"
        " (default: http://ADMIN-ADDRESS:ADMIN-PORT unless the address is a wildcard)",
    )
    p.set_defaults(func=cmd_bootstrap)

    p = add_command(
        sub,
        "crds",
        summary="print the ModelRoute and Gateway CustomResourceDefinitions (YAML)",
        description="Print the Kubernetes CustomResourceDefinitions of ModelRoute and Gateway. Their\n"
        "schemas are generated from the policy schema, so a resource's spec is validated like a\n"
        "policy file's. deploy/kubernetes/crds.yaml is this output.",
        examples=["switchyard crds > deploy/kubernetes/crds.yaml"],
    )
    p.set_defaults(func=cmd_crds)

    p = add_command(
        sub,
        "serve",
        summary="run the control plane (xDS for Envoy, the admin API, the policy watcher)",
        description="Run the control plane: serve xDS (ADS) to Envoys, the admin API, and reload when\n"
        "policy files change. An invalid edit is rejected (logged, and shown in /v1/status) and the\n"
        "last good configuration keeps being served. `switchyard up` runs this for you.",
        examples=[
            "switchyard serve --policies policies/",
            "switchyard serve --policies policies/ --tokens tokens.yaml --admin-address 0.0.0.0",
            "switchyard serve --kubernetes --namespace ml --tokens tokens.yaml --admin-address 0.0.0.0",
        ],
    )
    p.add_argument("--policies", nargs="+", metavar="DIR", help="policy directories or files")
    p.add_argument(
        "--kubernetes",
        action="store_true",
        help="read ModelRoute and Gateway resources and EndpointSlices from the Kubernetes API instead"
        " (in-cluster service account, else $KUBECONFIG); replicas elect a leader with a Lease",
    )
    p.add_argument("--namespace", metavar="NS", help="with --kubernetes: the namespace to watch (default: the Pod's)")
    p.add_argument(
        "--identity", metavar="NAME", help="with --kubernetes: this replica in the Lease (default: $POD_NAME, hostname)"
    )
    p.add_argument(
        "--lease-name",
        default="switchyard-leader",
        metavar="NAME",
        help="with --kubernetes: the Lease the replicas elect a leader with (default switchyard-leader)",
    )
    p.add_argument(
        "--lease-duration-s",
        type=_positive_seconds,
        default=15.0,
        metavar="S",
        help="with --kubernetes: how long a silent leader keeps the Lease before another replica takes over"
        " (default 15; it renews every 2/15 of that and gives up after 2/3)",
    )
    p.add_argument("--xds-address", default="127.0.0.1", metavar="ADDR", help="xDS listen address (default 127.0.0.1)")
    p.add_argument("--xds-port", type=int, default=18000, metavar="PORT", help="xDS port (default 18000)")
    p.add_argument(
        "--admin-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="admin API address (beyond loopback needs --tokens)",
    )
    p.add_argument("--admin-port", type=int, default=18001, metavar="PORT", help="admin API port (default 18001)")
    p.add_argument("--no-watch", action="store_true", help="do not reload when policy files change")
    p.add_argument(
        "--overrides",
        metavar="FILE",
        help="YAML {listen: host:port, endpoints: {model: {version: [host:port]}}} (written by `up`)",
    )
    p.add_argument(
        "--tokens",
        metavar="FILE",
        help="admin API bearer tokens: a YAML list of {name, token, role: reader|operator};"
        " without it the admin API is unauthenticated and must stay on loopback",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where history and the audit log live (default: <policies>/.switchyard)"
    )
    p.add_argument(
        "--envoy-admin",
        action="append",
        metavar="URL",
        help="an Envoy admin URL to read canary statistics from (repeatable); Envoys bootstrapped by"
        " `switchyard bootstrap` announce theirs in their node metadata",
    )
    p.add_argument(
        "--shadow-no-inputs", action="store_true", help="keep no inputs in shadow disagreement samples (privacy)"
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a reload that leaves no ModelRoute at all (by default it is held as a rejection,"
        " so an emptied or unmounted policy directory cannot remove every model)",
    )
    p.set_defaults(func=cmd_serve)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
