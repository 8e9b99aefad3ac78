"""HTTP surface of jobs: ``/v1/jobs`` (submit, poll, cancel) and
``/admin/jobs/dead-letters`` (list, re-queue).

A submission is accepted by whichever replica Envoy routed it to, so the
routing policy (split, rules, pinning) decides the version; polls, cancels and
the admin calls read Redis and may land on any replica of the model.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from redis.exceptions import RedisError

from model_services.api.checks import check_texts, check_version
from model_services.api.errors import ApiError
from model_services.api.near_miss import warning_header
from model_services.api.request_state import service_of
from model_services.jobs.callbacks import CallbackPolicy, CallbackRefused
from model_services.jobs.store import fingerprint
from model_services.jobs.system import JobSystem
from model_services.jobs.views import job_view


class JobRequest(BaseModel):
    # The body of /v1/predict plus a callback; unknown fields are kept like there (near misses).
    model_config = ConfigDict(extra="allow")

    text: StrictStr = Field(examples=["This product is terrible"])
    model_version: StrictStr | None = None
    callback_url: StrictStr | None = Field(default=None, examples=["https://example.com/hooks/jobs"])


router = APIRouter()


def _jobs(request: Request) -> JobSystem:
    # Mounted only beside a JobSystem (see create_app).
    jobs: JobSystem = request.app.state.jobs
    return jobs


def _unavailable(exc: RedisError) -> JSONResponse:
    return JSONResponse(
        {"error": f"the job queue is unavailable: {exc}", "code": "jobs_unavailable"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _check_callback(policy: CallbackPolicy, url: str | None) -> None:
    """Refuse now what delivery would refuse later (an SSRF guard, see callbacks.py)."""
    if url is None:
        return
    try:
        await policy.check_submission(url)
    except CallbackRefused as exc:
        raise ApiError(422, "invalid_callback_url", str(exc)) from exc


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        raise ApiError(422, "invalid_header", "Idempotency-Key must be 1-255 printable characters")
    return key


@router.post("/v1/jobs", status_code=202)
async def submit_job(body: JobRequest, request: Request) -> JSONResponse:
    service = service_of(request)
    jobs = _jobs(request)
    check_version(service, body.model_version)
    check_texts(service, [body.text], field="text")
    await _check_callback(jobs.policy, body.callback_url)
    key = _idempotency_key(request)
    print_ = fingerprint(body.text, body.callback_url, body.model_version)
    try:
        submitted = await jobs.store.submit(
            body.text,
            callback_url=body.callback_url,
            idempotency_key=key,
            fingerprint=print_,
            request_id=str(getattr(request.state, "request_id", "")),
        )
        if submitted.kind == "full":
            jobs.metrics.submitted("rejected")
            rate = jobs.runner.rate()
            # Time for the replica to work off a 10th of the limit, within [1, 60] s.
            retry = 60 if rate <= 0 else max(1, min(60, math.ceil(jobs.settings.max_depth / 10 / rate)))
            return JSONResponse(
                {
                    "error": f"job queue of {service.version} is full ({submitted.depth} unfinished jobs); retry later",
                    "code": "queue_full",
                },
                status_code=429,
                headers={"Retry-After": str(retry)},
            )
        record = await jobs.store.get(submitted.job_id)
    except RedisError as exc:
        return _unavailable(exc)
    if submitted.kind == "existing":
        if record is not None and record.get("fingerprint") not in ("", print_):
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key",
            )
        jobs.metrics.submitted("duplicate")
    else:
        jobs.metrics.submitted("accepted")
    status = record["status"] if record else "queued"
    headers = {"Location": f"/v1/jobs/{submitted.job_id}"}
    warnings = service.near_misses.warnings((body.model_extra or {}).keys(), request.headers.keys())
    if warnings:
        headers["Warning"] = warning_header(warnings)
    if submitted.kind == "existing":
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse({"job_id": submitted.job_id, "status": status}, status_code=202, headers=headers)


async def _record(jobs: JobSystem, job_id: str) -> dict[str, str]:
    record = await jobs.store.get(job_id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, or its result expired)")
    return record


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    try:
        return JSONResponse(job_view(await _record(jobs, job_id)))
    except RedisError as exc:
        return _unavailable(exc)


@router.delete("/v1/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    try:
        record = await _record(jobs, job_id)
        before = await jobs.store.cancel(record)
        if before == "":
            raise ApiError(404, "job_not_found", f"no job {job_id!r}")
        if before != "queued":
            raise ApiError(409, "job_not_queued", f"job {job_id} is {before}; only a queued job can be cancelled")
        return JSONResponse(job_view(await _record(jobs, job_id)))
    except RedisError as exc:
        return _unavailable(exc)


# -- admin: dead letters --------------------------------------------------------------


@router.get("/admin/jobs/dead-letters")
async def list_dead_letters(request: Request) -> JSONResponse:
    """Every version of this model: a dead letter is re-queued to the version it was assigned."""
    jobs = _jobs(request)
    try:
        dead = await jobs.store.dead_letters()
    except RedisError as exc:
        return _unavailable(exc)
    items: list[dict[str, Any]] = [
        {
            "job_id": d.job_id,
            "model_version": d.version,
            "attempts": d.attempts,
            "error": d.error,
            "failed_at": d.failed_at,
            "dead_letter_id": d.entry_id,
        }
        for d in dead
    ]
    return JSONResponse({"dead_letters": items})


@router.post("/admin/jobs/dead-letters/{job_id}/requeue", status_code=202)
async def requeue_dead_letter(job_id: str, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    try:
        dead = [d for d in await jobs.store.dead_letters() if d.job_id == job_id]
        if not dead or not await jobs.store.requeue(dead[-1]):
            raise ApiError(404, "dead_letter_not_found", f"job {job_id!r} is not in a dead-letter stream")
        return JSONResponse(job_view(await _record(jobs, job_id)), status_code=202)
    except RedisError as exc:
        return _unavailable(exc)
