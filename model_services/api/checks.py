"""Request checks shared by every prediction route (v1, v2 and jobs): which service
answers, whether it serves the version asked for, whether the texts are acceptable,
and by when the answer is due."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from model_services.api.errors import ApiError
from model_services.serving.service import ModelService


def deadline_from(headers: Mapping[str, str], service: ModelService) -> float:
    """When the answer is due (monotonic clock), from a request's headers or the service default."""
    timeout_ms = service.config.request_timeout_ms
    # Our own header wins; Envoy announces its route timeout in the other one.
    for header in ("x-request-timeout-ms", "x-envoy-expected-rq-timeout-ms"):
        raw = headers.get(header)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise ApiError(422, "invalid_header", f"{header} must be a positive number of ms")
        timeout_ms = value
        break
    return time.monotonic() + timeout_ms / 1000.0


def check_version(service: ModelService, requested: str | None) -> None:
    if requested is not None and requested != service.version:
        raise ApiError(
            404,
            "version_not_served",
            f"this service serves {service.version!r}, not {requested!r}; "
            "send the request through the router or to that version's service",
        )


def check_texts(service: ModelService, texts: Sequence[str], *, field: str) -> None:
    if not texts:
        raise ApiError(422, "empty_input", f"{field} must contain at least one text")
    if len(texts) > service.config.max_batch_texts:
        raise ApiError(
            413,
            "too_many_texts",
            f"{field} has {len(texts)} texts; the limit is {service.config.max_batch_texts}",
        )
    limit = service.config.max_text_chars
    for i, text in enumerate(texts):
        where = field if len(texts) == 1 and field == "text" else f"{field}[{i}]"
        if not text.strip():
            raise ApiError(422, "empty_text", f"{where} is empty; send some text to classify")
        if len(text) > limit:
            raise ApiError(
                413,
                "text_too_long",
                f"{where} has {len(text)} characters; the limit is {limit}",
            )
