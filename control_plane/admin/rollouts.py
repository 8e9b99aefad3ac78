"""``/v1/models/{name}/rollout``: start, pause, resume, abort and promote canary rollouts.

Handlers are ``async`` and do not await: like every change, they run start to
finish on the event loop that owns the controller and the rollout runner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Response

from control_plane.admin.context import Action, Context, Operator, Reader, mutation
from control_plane.operations.audit import audited
from control_plane.operations.changes import strong_etag
from control_plane.rollout.runner import Transition

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
    **mutation("rollout-{verb}"),
)
async def act(name: str, verb: Verb, ctx: Context, who: Operator, action: Action) -> dict[str, Any]:
    step: Callable[[str, str], Transition] = getattr(ctx.rollouts, verb)  # a RolloutRunner verb (model, who)
    audited(
        ctx.audit,
        who=who.name,
        action=action,
        model=name,
        request={"verb": verb},
        apply=lambda: step(name, who.name),
        outcome=Transition.outcome,
    )
    return ctx.rollouts.view(name)
