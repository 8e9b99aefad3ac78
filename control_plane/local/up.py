"""`switchyard up`: the control plane, Envoy and every model-service replica on this machine."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from control_plane.cli.common import add_command, relative_to_cwd
from control_plane.local import commands
from control_plane.local.supervisor import Managed, Supervisor
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import PolicySet
from control_plane.sources.files import load_policies
from control_plane.xds.bootstrap import bootstrap_yaml
from control_plane.xds.envoy_binary import envoy_binary

READY_TIMEOUT_S = 600.0  # first start trains nothing, but loads MiniLM in several processes on 2 cores


@dataclass(frozen=True, slots=True)
class Replica:
    model: str
    version: str
    index: int
    port: int
    child_name: str
    grpc_port: int | None = None  # for models whose route declares grpc_endpoints


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Console:
    """Progress on one rewritten line when attached to a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = ""

    def progress(self, text: str) -> None:
        # Without a terminal, print a line only when something other than the clock changed.
        key = text.split("]", 1)[-1]
        if key == self._last:
            return
        self._last = key
        if self.tty:
            print(f"\r\033[K{text}", end="", flush=True)
        else:
            print(text, flush=True)

    def say(self, text: str) -> None:
        if self.tty and self._last:
            print("\r\033[K", end="")
        self._last = ""
        print(text, flush=True)


class LocalStack:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.policies_dir = Path(args.policies).resolve()
        self.state = Path(args.state_dir).resolve()
        self.store = Path(args.model_store).resolve() if args.model_store else self.state / "models"
        self.python = sys.executable
        self.replicas: list[Replica] = []
        self.children: dict[str, Managed] = {}
        self.supervisor = Supervisor(self.state / "logs", self.console.say)
        self.admin_url = f"http://127.0.0.1:{args.admin_port}"
        self.listen = f"{args.address}:{args.port}"

    # -- preparation ------------------------------------------------------------------

    def load(self) -> PolicySet:
        try:
            policies = load_policies([self.policies_dir])
        except PolicyErrors as exc:
            raise SystemExit("the policies are invalid:\n" + "\n".join(str(e) for e in exc.errors)) from exc
        if not policies.fleets:
            raise SystemExit(f"no `kind: Fleet` document in {self.policies_dir}: nothing to run (see README)")
        return policies

    def check_ports(self) -> None:
        wanted = {
            "the Envoy listener (--port)": (self.args.address, self.args.port),
            "the xDS server (--xds-port)": ("127.0.0.1", self.args.xds_port),
            "the admin API (--admin-port)": ("127.0.0.1", self.args.admin_port),
            "Envoy's admin (--envoy-admin-port)": ("127.0.0.1", self.args.envoy_admin_port),
        }
        busy = [f"{what}: {host}:{port}" for what, (host, port) in wanted.items() if not _port_is_free(host, port)]
        if busy:
            raise SystemExit("ports already in use (is another `switchyard up` running?):\n  " + "\n  ".join(busy))

    def build_store(self, policies: PolicySet) -> None:
        needed = sorted({v.model for f in policies.fleets for v in f.value.spec.versions.values()})
        missing = [m for m in needed if not (self.store / m / "manifest.json").exists()]
        if not missing:
            return
        self.console.say(f"building the model store in {self.store} (first start; {', '.join(missing)} missing)")
        self.store.mkdir(parents=True, exist_ok=True)
        log_path = self.state / "logs" / "model-store-build.log"
        with log_path.open("ab") as log_file:
            result = subprocess.run(
                commands.build_store(self.python, self.store),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise SystemExit(f"building the model store failed (exit {result.returncode}); see {log_path}")
        still = [m for m in needed if not (self.store / m / "manifest.json").exists()]
        if still:
            raise SystemExit(f"the Fleet asks for {', '.join(still)}, which the model store build does not make")

    def plan(self, policies: PolicySet) -> Path:
        """Pick a port per replica and write the overrides the control plane applies."""
        endpoints: dict[str, dict[str, list[str]]] = {}
        grpc_endpoints: dict[str, dict[str, list[str]]] = {}
        with_grpc = {
            m.value.metadata.name
            for m in policies.models
            if any(v.grpc_endpoints is not None for v in m.value.spec.versions.values())
        }
        for located in policies.fleets:
            fleet = located.value
            model = fleet.metadata.name
            for version, spec in fleet.spec.versions.items():
                for index in range(spec.replicas):
                    port = free_port()
                    grpc_port = free_port() if model in with_grpc else None
                    name = f"{version}-{index + 1}"
                    self.replicas.append(Replica(model, version, index, port, name, grpc_port))
                    endpoints.setdefault(model, {}).setdefault(version, []).append(f"127.0.0.1:{port}")
                    if grpc_port is not None:
                        grpc_endpoints.setdefault(model, {}).setdefault(version, []).append(f"127.0.0.1:{grpc_port}")
        path = self.state / "overrides.yaml"
        overrides = {"listen": self.listen, "endpoints": endpoints, "grpc_endpoints": grpc_endpoints}
        path.write_text(yaml.safe_dump(overrides, sort_keys=False))
        return path

    # -- running ----------------------------------------------------------------------

    def start(self, policies: PolicySet, overrides: Path) -> None:
        a = self.args
        self.children["control-plane"] = self.supervisor.add(
            "control-plane",
            commands.control_plane(
                self.python,
                policies=self.policies_dir,
                xds_address="127.0.0.1",
                xds_port=a.xds_port,
                admin_address="127.0.0.1",
                admin_port=a.admin_port,
                overrides=overrides,
                state_dir=self.state / "control-plane",  # history and audit log of this local run
            ),
        )
        specs = {(f.value.metadata.name, v): s for f in policies.fleets for v, s in f.value.spec.versions.items()}
        for replica in self.replicas:
            spec = specs[(replica.model, replica.version)]
            self.children[replica.child_name] = self.supervisor.add(
                replica.child_name,
                commands.model_service(
                    self.python,
                    model_dir=self.store / spec.model,
                    served_version=replica.version,
                    spec=spec,
                    host="127.0.0.1",
                    port=replica.port,
                    grpc_port=replica.grpc_port,
                    report_url=f"{self.admin_url}/v1/shadow/reports",  # shadow comparison
                ),
                env={"HF_HUB_OFFLINE": "1"},
            )
        config = self.state / "envoy.yaml"
        config.write_text(
            bootstrap_yaml("127.0.0.1", a.xds_port, admin_port=a.envoy_admin_port, node_id="switchyard-up")
        )
        self.children["envoy"] = self.supervisor.add("envoy", commands.envoy(envoy_binary(), config=config))

    def _replica_ready(self, replica: Replica) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{replica.port}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _control_plane_status(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.admin_url}/v1/status", timeout=2)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        status: dict[str, Any] = response.json()
        return status

    def routing_ready(self) -> bool:
        """The control plane sees every version ready and Envoy runs the snapshot that says so.

        A replica answering ready is not enough: Envoy's health check and the
        control plane's weights must have caught up, or a request for a version
        (a premium user, a pinned client) can still meet `503 no healthy upstream`.
        """
        status = self._control_plane_status()
        if status is None or status["snapshot_version"] is None:
            return False
        all_ready = all(v["ready"] for m in status["models"] for v in m["versions"])
        synced = any(n["connected"] and n["synced_snapshot"] == status["snapshot_version"] for n in status["envoys"])
        return all_ready and synced

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        started = time.monotonic()
        while time.monotonic() < deadline:
            self.supervisor.check()
            ready = {r.child_name: self._replica_ready(r) for r in self.replicas}
            synced = self.routing_ready()
            by_version: dict[str, list[bool]] = {}
            for replica in self.replicas:
                by_version.setdefault(replica.version, []).append(ready[replica.child_name])
            parts = [f"{v} {sum(rs)}/{len(rs)}" for v, rs in by_version.items()]
            self.console.progress(
                f"[{time.monotonic() - started:4.0f}s] replicas ready: {', '.join(parts)}; "
                f"routing {'ready' if synced else 'waiting for health checks and Envoy'}"
            )
            if synced and all(ready.values()):
                self.console.say(f"everything is ready after {time.monotonic() - started:.0f}s")
                return
            time.sleep(0.5)
        raise SystemExit(f"not ready after {READY_TIMEOUT_S:.0f}s; logs are in {self.state / 'logs'}")

    def banner(self) -> str:
        url = f"http://{'127.0.0.1' if self.args.address == '0.0.0.0' else self.args.address}:{self.args.port}"
        body = json.dumps({"text": "This product is terrible"})
        lines = [
            "",
            f"  Envoy (send requests here):  {url}",
            f"  admin API:                   {self.admin_url}/v1/status   (OpenAPI: {self.admin_url}/docs)",
            f"  Envoy admin:                 http://127.0.0.1:{self.args.envoy_admin_port}",
            f"  replicas:                    {', '.join(f'{r.child_name}@{r.port}' for r in self.replicas)}",
            f"  logs:                        {self.state / 'logs'}",
            "",
            "  Try:",
            f"    curl -s {url}/v1/predict -H 'content-type: application/json' -d {shlex.quote(body)}",
            f"    switchyard traffic --url {url}          # live table of versions, codes, latency",
            "",
            "  Edit policies/*.yaml to shift traffic; Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def supervise(self, stop: threading.Event) -> None:
        """Restart crashed children, and say here what the control plane did with each policy edit."""
        status = self._control_plane_status()
        seen = max((r["at"] for r in status["policy"]["reloads"]), default=0.0) if status else 0.0
        while not stop.wait(0.5):
            self.supervisor.check()
            seen = self.report_reloads(seen)

    def report_reloads(self, seen: float) -> float:
        """Print each reload newer than ``seen`` (one line, or the rejection's lines); the newest time."""
        status = self._control_plane_status()
        if status is None:
            return seen
        for reload in status["policy"]["reloads"]:
            if reload["at"] <= seen:
                continue
            seen = reload["at"]
            for line in reload_lines(reload):
                self.console.say(line)
        return seen

    def shutdown(self) -> None:
        self.console.say("stopping: Envoy, then the replicas (draining), then the control plane")
        replicas = [self.children[r.child_name] for r in self.replicas if r.child_name in self.children]
        groups = [[c] for c in (self.children.get("envoy"),) if c] + [replicas]
        groups += [[c] for c in (self.children.get("control-plane"),) if c]
        self.supervisor.stop(groups)
        self.console.say("stopped; no process left behind")


def reload_lines(reload: dict[str, Any]) -> list[str]:
    """What `up` prints for one reload: rejections in full, accepted edits in a line, no-ops not at all."""
    when = time.strftime("%H:%M:%S", time.localtime(reload["at"]))
    if not reload["accepted"]:
        return [f"[{when}] policy change rejected; still serving the last good configuration:"] + [
            f"    {relative_to_cwd(error)}" for error in reload["errors"]
        ]
    if reload["changed"]:
        return [f"[{when}] policy change accepted: {reload['models']} model(s), snapshot {reload['snapshot_version']}"]
    return []


def run_up(args: argparse.Namespace) -> int:
    console = Console()
    stack = LocalStack(args, console)
    stack.state.mkdir(parents=True, exist_ok=True)
    (stack.state / "logs").mkdir(exist_ok=True)
    policies = stack.load()
    stack.check_ports()
    stack.build_store(policies)
    overrides = stack.plan(policies)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a process started in the background by a script inherits
    # SIGINT ignored, and Python then installs no handler of its own (Ctrl-C did nothing).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start(policies, overrides)
        stack.wait_ready()
        console.say(stack.banner())
        stack.supervise(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.shutdown()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "up",
        summary="run control plane, Envoy and the model-service fleet on this machine",
        description="Run the whole system locally: build the model store if it is missing, start the\n"
        "control plane, Envoy and every replica the policies' `kind: Fleet` documents ask for (on\n"
        "free ports), wait until Envoy has ACKed the configuration and every version is ready,\n"
        "restart a replica that crashes, print each policy edit the control plane accepts or\n"
        "rejects, and stop everything cleanly on Ctrl-C. Everything listens on 127.0.0.1 (the\n"
        "Gateway document's address and port are for containers; use --address and --port).",
        examples=["switchyard up", "switchyard up --port 8080 --state-dir /tmp/switchyard"],
    )
    p.add_argument("--policies", default="policies", metavar="DIR", help="policy directory (needs a `kind: Fleet`)")
    p.add_argument("--state-dir", default=".state", metavar="DIR", help="model store, logs, generated configs")
    p.add_argument(
        "--model-store", default=None, metavar="DIR", help="model store directory (default STATE_DIR/models)"
    )
    p.add_argument("--address", default="127.0.0.1", metavar="ADDR", help="Envoy listener address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=10000, metavar="PORT", help="Envoy listener port (default 10000)")
    p.add_argument("--xds-port", type=int, default=18000, metavar="PORT", help="control plane xDS port (default 18000)")
    p.add_argument("--admin-port", type=int, default=18001, metavar="PORT", help="admin API port (default 18001)")
    p.add_argument("--envoy-admin-port", type=int, default=9901, metavar="PORT", help="Envoy admin port (default 9901)")
    p.set_defaults(func=run_up)
