"""`switchyard serve`: the control plane process (xDS gRPC + admin HTTP + watcher + prober)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn

from control_plane.admin.app import create_app
from control_plane.controller import Controller
from control_plane.health import HealthProber
from control_plane.watcher import watch_policies
from control_plane.xds import server as ads
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to the process: one SIGTERM stops every server in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class ServeOptions:
    policies: list[Path]
    xds_address: str = "127.0.0.1"
    xds_port: int = 18000
    admin_address: str = "127.0.0.1"
    admin_port: int = 18001
    watch: bool = True


async def serve(options: ServeOptions) -> int:
    cache = SnapshotCache()
    nodes = NodeRegistry()
    controller = Controller(options.policies, cache)
    prober = HealthProber(controller.set_unready)

    outcome = controller.reload()
    if not outcome.accepted:
        log.error("the policies are invalid; fix them and the control plane will pick them up")
    if controller.intent is not None:
        prober.set_intent(controller.intent)
        await prober.probe_all()  # the first snapshot Envoy sees already knows who is ready

    grpc_server = grpc.aio.server()
    ads.add_to_server(grpc_server, cache, nodes)
    grpc_server.add_insecure_port(f"{options.xds_address}:{options.xds_port}")
    await grpc_server.start()
    log.info("xDS (ADS) listening on %s:%d", options.xds_address, options.xds_port)

    admin = _EmbeddedUvicorn(
        uvicorn.Config(
            create_app(controller, cache, nodes, prober),
            host=options.admin_address,
            port=options.admin_port,
            log_level="warning",
            lifespan="off",
        )
    )

    def on_policy_change() -> None:
        result = controller.reload()
        if result.accepted and controller.intent is not None:
            prober.set_intent(controller.intent)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(admin.serve()), asyncio.create_task(prober.run())]
    if options.watch:
        tasks.append(asyncio.create_task(watch_policies(options.policies, on_policy_change)))
    log.info("admin API on http://%s:%d", options.admin_address, options.admin_port)
    await stop.wait()
    log.info("shutting down")
    admin.should_exit = True
    await grpc_server.stop(grace=1.0)
    for task in tasks[1:]:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return 0
