"""``/v1/models/{name}/rollout``: start, pause, resume, abort and promote canary rollouts.

Handlers are ``async`` and do not await: like every change, they run start to
finish on the event loop that owns the controller and the rollout runner.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response

from control_plane.admin.context import Context, Operator, Reader
from control_plane.changes import strong_etag

router = APIRouter(prefix="/v1/models", tags=["rollouts"])


@router.get("/{name}/rollout", summary="The rollout's phase, step, weight, deadline and latest checks; with an ETag")
async def status(name: str, ctx: Context, who: Reader, response: Response) -> dict[str, Any]:
    view = ctx.rollouts.view(name)
    response.headers["ETag"] = strong_etag(view)
    return view


Verb = Literal["start", "pause", "resume", "abort", "promote"]


@router.post(
    "/{name}/rollout/{verb}",
    summary="start: roll spec.canary.candidate out step by step; pause: hold the current step; "
    "resume: continue with a fresh interval; abort: all traffic back to the baseline now; "
    "promote: all traffic to the candidate now",
)
async def act(name: str, verb: Verb, ctx: Context, who: Operator) -> dict[str, Any]:
    getattr(ctx.rollouts, verb)(name, who.name)  # each verb is a RolloutRunner method (name, who)
    return ctx.rollouts.view(name)
