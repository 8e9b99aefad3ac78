"""The admin FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from control_plane.admin import status
from control_plane.controller import Controller
from control_plane.health import HealthProber
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry


def create_app(
    controller: Controller, cache: SnapshotCache, nodes: NodeRegistry, prober: HealthProber
) -> FastAPI:
    app = FastAPI(title="Switchyard admin API", version="1")
    app.state.controller = controller
    app.state.cache = cache
    app.state.nodes = nodes
    app.state.prober = prober
    app.include_router(status.router)
    return app
