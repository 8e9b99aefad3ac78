"""``/v1/models/{name}/rollout``: start, pause, resume, abort and promote canary rollouts.

Handlers are ``async`` and do not await: like every change, they run start to
finish on the event loop that owns the controller and the rollout runner.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from control_plane.admin.context import Operator, Reader
from control_plane.changes import ChangeError
from control_plane.rollout.runner import RolloutRunner

router = APIRouter(prefix="/v1/models", tags=["rollouts"])


def runner(request: Request) -> RolloutRunner:
    found: RolloutRunner | None = getattr(request.app.state, "rollouts", None)
    if found is None:
        raise ChangeError(503, "rollouts are not enabled in this control plane")
    return found


@router.get("/{name}/rollout", summary="The rollout's phase, step, weight, deadline and latest checks")
async def status(name: str, request: Request, who: Reader) -> dict[str, Any]:
    return runner(request).view(name)


@router.post("/{name}/rollout/start", summary="Start rolling out spec.canary.candidate, step by step")
async def start(name: str, request: Request, who: Operator) -> dict[str, Any]:
    r = runner(request)
    r.start(name, who.name)
    return r.view(name)


@router.post("/{name}/rollout/pause", summary="Hold the current step (checks stop until resumed)")
async def pause(name: str, request: Request, who: Operator) -> dict[str, Any]:
    r = runner(request)
    r.pause(name, who.name)
    return r.view(name)


@router.post("/{name}/rollout/resume", summary="Continue a paused rollout with a fresh interval")
async def resume(name: str, request: Request, who: Operator) -> dict[str, Any]:
    r = runner(request)
    r.resume(name, who.name)
    return r.view(name)


@router.post("/{name}/rollout/abort", summary="Send all traffic back to the baseline now")
async def abort(name: str, request: Request, who: Operator) -> dict[str, Any]:
    r = runner(request)
    r.abort(name, who.name)
    return r.view(name)


@router.post("/{name}/rollout/promote", summary="Send all traffic to the candidate now")
async def promote(name: str, request: Request, who: Operator) -> dict[str, Any]:
    r = runner(request)
    r.promote(name, who.name)
    return r.view(name)
