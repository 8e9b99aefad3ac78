"""What a request carries through the service: the app's ModelService, and when it arrived
(set by the middleware), for metrics and the ``latency_ms`` of answers."""

from __future__ import annotations

import time

from fastapi import Request

from model_services.serving.service import ModelService


def service_of(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


def elapsed(request: Request) -> float:
    started: float = request.state.started
    return time.perf_counter() - started


def latency_ms(request: Request) -> float:
    return round(elapsed(request) * 1000.0, 2)
