"""uvicorn with the drain behaviour a fleet behind Envoy needs.

On the first SIGTERM/SIGINT the service reports not ready at once. After
``drain_grace_s`` (time for health checks to take the endpoint out of rotation,
during which requests are still served) uvicorn closes the listener, lets every
open request finish, and only then runs the app's shutdown, which empties the
batch queue. A second signal skips the waiting. The process exits 0 after a
drain and 1 when the model could not be loaded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from types import FrameType

import uvicorn

from model_services.api.app import create_app
from model_services.config import ServeConfig
from model_services.serving.service import ModelService, State

log = logging.getLogger("model_services")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: ModelService, grace_s: float) -> None:
        super().__init__(config)
        self._service = service
        self._grace_s = grace_s
        self._drain_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes: only plain assignments here.
        if self._drain_since is not None:
            self.force_exit = True
            self.should_exit = True
            return
        self._drain_since = time.monotonic()
        self._service.begin_drain()
        if self._grace_s <= 0:
            self.should_exit = True
        # Not recorded in uvicorn's captured signals: it would re-raise SIGTERM at
        # the end and turn a clean drain into "killed by signal".

    async def on_tick(self, counter: int) -> bool:
        if self._drain_since is not None and time.monotonic() - self._drain_since >= self._grace_s:
            self.should_exit = True
        return await super().on_tick(counter)

    def request_exit(self) -> None:
        self.should_exit = True


def run(config: ServeConfig, sock: socket.socket | None = None) -> int:
    """Serve until drained; returns the process exit code."""
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.switch_interval_ms is not None:
        sys.setswitchinterval(config.switch_interval_ms / 1000.0)
    service = ModelService(config)
    app = create_app(service)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=config.access_log,
        lifespan="on",
        # Named, never "auto": what is installed must not change the parser.
        http=config.http_parser,
        # Wait for in-flight requests however long they take: their own deadlines
        # bound them, and dropping one is what the drain exists to avoid.
        timeout_graceful_shutdown=None,
        # Longer than Envoy's upstream idle timeout default (1h is too long to
        # mirror); avoids the race where we close a connection Envoy just reused.
        timeout_keep_alive=75,
    )
    server = DrainingServer(uv_config, service, config.drain_grace_s)
    service.on_fatal = server.request_exit
    asyncio.run(server.serve(sockets=[sock] if sock is not None else None))
    return 1 if service.state is State.FAILED else 0
