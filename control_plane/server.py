"""`switchyard serve`: the control plane process (xDS gRPC + admin HTTP + watcher + prober)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydantic
import uvicorn
import yaml

from control_plane import ir
from control_plane.admin.auth import TokenFileError, check_exposure
from control_plane.engine.watcher import watch_policies
from control_plane.plane import ServeOptions, build
from control_plane.policy.compile import LocalOverrides
from control_plane.policy.endpoints import parse_endpoint
from control_plane.sources.splice import remove_stale_temp_files
from control_plane.xds import server as ads

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to the process: one SIGTERM stops every server in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _OverridesFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    listen: str | None = None  # "host:port"
    endpoints: dict[str, dict[str, list[str]]] = pydantic.Field(default_factory=dict)
    grpc_endpoints: dict[str, dict[str, list[str]]] = pydantic.Field(default_factory=dict)


def load_overrides(path: Path) -> LocalOverrides:
    """The YAML file `switchyard up` writes; raise ValueError naming the problem."""
    try:
        data = _OverridesFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        listener = None
        if data.listen is not None:
            parsed = parse_endpoint(data.listen)
            listener = ir.Listener(parsed.host, parsed.port)
        for overridden in (data.endpoints, data.grpc_endpoints):
            for versions in overridden.values():
                for endpoints in versions.values():
                    for endpoint in endpoints:
                        parse_endpoint(endpoint)
    except (OSError, yaml.YAMLError, pydantic.ValidationError, ValueError) as exc:
        raise ValueError(f"{path}: bad overrides file: {exc}") from exc
    return LocalOverrides(listener, data.endpoints, data.grpc_endpoints)


def _listen(address: str, port: int) -> socket.socket:
    """The admin API's socket, bound before anything starts, so a busy port is a clear error."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve(options: ServeOptions) -> int:
    try:
        plane = build(options)
        check_exposure(options.admin_address, plane.parts.authenticator)
    except TokenFileError as exc:
        log.error("%s", exc)
        return 2
    if not plane.parts.authenticator.enabled:
        log.warning(
            "admin API: no --tokens given, so it accepts unauthenticated requests; listening on %s only",
            options.admin_address,
        )
    try:
        admin_socket = _listen(options.admin_address, options.admin_port)
    except OSError as exc:
        log.error(
            "cannot listen for the admin API on %s:%d: %s", options.admin_address, options.admin_port, exc.strerror
        )
        return 2
    # No SO_REUSEPORT: a second control plane on the same port must fail, not share it.
    grpc_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    try:
        grpc_server.add_insecure_port(f"{options.xds_address}:{options.xds_port}")
    except RuntimeError:
        log.error(
            "cannot listen for xDS on %s:%d: address in use or not available", options.xds_address, options.xds_port
        )
        admin_socket.close()
        return 2

    for stale in remove_stale_temp_files([*options.policies, plane.state_dir]):
        log.warning("removed %s, left by a write that was interrupted", stale)
    parts = plane.parts
    tasks, changes, prober, rollouts = parts.tasks, parts.changes, parts.prober, parts.rollouts
    kubernetes = plane.kubernetes

    async def on_resource_change() -> None:
        await changes.reload_in_thread(who="kubernetes", action="resource-edit")

    if kubernetes is not None:
        kubernetes.source.on_change = on_resource_change
        for name, loop_ in kubernetes.loops().items():
            tasks.start(name, loop_)
        await kubernetes.wait_synced()
        log.info("watching ModelRoutes, Gateways and EndpointSlices in namespace %s", kubernetes.options.namespace)
    outcome = parts.changes.reload(action="startup")
    if not outcome.accepted:
        log.error("the policies are invalid; fix them and the control plane will pick them up")
    if parts.controller.intent is not None:
        parts.prober.set_intent(parts.controller.intent)
        await parts.prober.probe_all()  # the first snapshot Envoy sees already knows who is ready

    ads.add_to_server(grpc_server, parts.cache, parts.nodes)
    await grpc_server.start()
    log.info("xDS (ADS) listening on %s:%d", options.xds_address, options.xds_port)

    admin = _EmbeddedUvicorn(
        uvicorn.Config(
            plane.app,
            host=options.admin_address,
            port=options.admin_port,
            log_level="warning",
            lifespan="off",
            # Named, not "auto" (which takes httptools once the model service's
            # dependency is installed): the admin API is not on the data path, and
            # its hostile-input tests were written against h11's strict parser.
            http="h11",
        )
    )

    async def on_policy_change() -> None:
        # Files are read and validated off the event loop; also after our own
        # write-back: same content, same snapshot, no push.
        await changes.reload_in_thread()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    admin_task = tasks.start("admin-api", admin.serve(sockets=[admin_socket]))
    admin_task.add_done_callback(lambda _: stop.set())  # without its API the process is of no use
    tasks.start("health-prober", prober.run())
    tasks.start("rollout-runner", rollouts.run())
    if options.watch and kubernetes is None:
        tasks.start("policy-watcher", watch_policies(options.policies, on_policy_change))
    log.info("admin API on http://%s:%d", options.admin_address, options.admin_port)
    await stop.wait()
    log.info("shutting down")
    healthy = tasks.healthy
    tasks.shutting_down()
    admin.should_exit = True
    await grpc_server.stop(grace=1.0)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(admin_task), timeout=5)
    await tasks.stop()  # cancels the election too: the leader releases its Lease
    await rollouts.close()
    if kubernetes is not None:
        await kubernetes.close()
    return 0 if healthy else 1
