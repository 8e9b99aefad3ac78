"""``/v1/models``: read a model's routing, and change it (shift, shadow, promote, rollback).

Mutations are ``async`` on purpose: they run on the event loop that owns the
controller, start to finish without awaiting, so racing requests are
serialised and a stale ``If-Match`` is always caught (412).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from control_plane import ir
from control_plane.admin.auth import Identity
from control_plane.admin.context import Action, AdminContext, Context, Operator, Reader, mutation
from control_plane.admin.status import model_view, policy_state
from control_plane.operations.audit import Outcome, audited
from control_plane.operations.changes import Change, ChangeError, combined_etag, etag_of, find_model, no_such_model
from control_plane.policy.loader import Located
from control_plane.policy.schema import ModelRoute, Percent

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionName = Annotated[str, Field(min_length=1, max_length=253, examples=["sentiment-v4"])]


def _integral(value: Any) -> Any:
    # JSON has one number type: 50.0 is the integer 50 to a JSON Schema validator (and
    # to JavaScript). Anything else that is not an int is left for the strict check.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A split's weight as JSON clients send it: an integer percentage, 50 or 50.0.
Weight = Annotated[int, BeforeValidator(_integral), Field(strict=True, ge=0, le=100)]
IfMatch = Annotated[
    str | None,
    Header(description="The model's ETag from a GET; a stale one gets 412 and changes nothing"),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrafficBody(_Body):
    weights: dict[VersionName, Weight] = Field(
        min_length=1,
        description="The whole new split: integer percentages summing to 100",
        examples=[{"sentiment-v3": 75, "sentiment-v4": 25}],
    )


class ShadowBody(_Body):
    version: VersionName
    percent: Percent = Field(default=100, description="Share of live requests mirrored, (0, 100]")


class PromoteBody(_Body):
    version: VersionName


# -- reading -------------------------------------------------------------------------------


def _view(
    ctx: AdminContext, name: str, located: Located[ModelRoute] | None = None, model: ir.Model | None = None
) -> dict[str, Any]:
    intent = ctx.controller.served or ctx.controller.intent
    located = located or find_model(ctx.controller.policies, name)
    if model is None and intent is not None:
        model = next((m for m in intent.models if m.name == name), None)
    if located is None or model is None:
        raise unknown_model(ctx, name)
    view = model_view(ctx.controller, ctx.prober, name, model)
    current = ctx.cache.current
    view.update(
        etag=etag_of(located.value),
        file=located.source.file,
        line=located.source.line,
        snapshot_version=current.version if current else None,
    )
    return view


def unknown_model(ctx: AdminContext, name: str) -> ChangeError:
    intent = ctx.controller.intent
    return no_such_model(name, (m.name for m in intent.models) if intent else ())


@router.get("", summary="Every model: versions, split, rules, shadows, readiness; the ETag covers them all")
async def list_models(ctx: Context, who: Reader, response: Response) -> dict[str, Any]:
    policies, intent = ctx.controller.policies, ctx.controller.served or ctx.controller.intent
    located = {m.value.metadata.name: m for m in policies.models} if policies else {}
    current = ctx.cache.current
    views = [_view(ctx, m.name, located.get(m.name), m) for m in (intent.models if intent else ())]
    response.headers["ETag"] = combined_etag([v["etag"] for v in views])
    return {
        "snapshot_version": current.version if current else None,
        "policy": policy_state(ctx.controller),
        "models": views,
    }


@router.get("/{name}", summary="One model; the ETag header is what If-Match expects")
async def get_model(name: str, ctx: Context, who: Reader, response: Response) -> dict[str, Any]:
    view = _view(ctx, name)
    view["policy"] = policy_state(ctx.controller)
    response.headers["ETag"] = view["etag"]
    return view


@router.get("/{name}/history", summary="Every split the model has had, oldest first, with who and when")
async def history(name: str, ctx: Context, who: Reader) -> dict[str, Any]:
    entries = ctx.changes.history.entries(name)
    if not entries and find_model(ctx.controller.policies, name) is None:
        raise unknown_model(ctx, name)
    return {"model": name, "history": [e.to_json() for e in entries]}


# -- changing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelChange:
    """One call to a mutating route: who makes it, the route's audit action, its If-Match."""

    ctx: AdminContext
    who: Identity
    action: str
    response: Response
    if_match: str | None

    def run(self, model: str, request: Any, change: Callable[[str, str | None], Change]) -> dict[str, Any]:
        """Make ``change(who, if_match)`` through the one audited path, and describe the result."""

        def outcome(result: Change) -> Outcome:
            reason = None if result.changed else "no change: the model already had this split"
            return Outcome(result.old.to_json(), result.new.to_json(), result.snapshot_version, reason)

        ctx, action = self.ctx, self.action
        try:
            result = audited(
                ctx.audit,
                who=self.who.name,
                action=action,
                model=model,
                request=request,
                apply=lambda: change(self.who.name, self.if_match),
                outcome=outcome,
            )
        except ChangeError:
            ctx.metrics.changes.labels(action, "rejected").inc()
            raise
        ctx.metrics.changes.labels(action, "accepted" if result.changed else "unchanged").inc()
        self.response.headers["ETag"] = result.etag
        return {
            "model": result.model,
            "action": action,
            "changed": result.changed,
            "old": result.old.to_json(),
            "new": result.new.to_json(),
            "snapshot_version": result.snapshot_version,
            "etag": result.etag,
            "file": result.file,
            "model_view": _view(ctx, model),
        }


async def model_change(
    ctx: Context, who: Operator, action: Action, response: Response, if_match: IfMatch = None
) -> ModelChange:
    return ModelChange(ctx, who, action, response, if_match)


Mutation = Annotated[ModelChange, Depends(model_change)]


@router.put("/{name}/traffic", summary="Set the default split", **mutation("shift"))
async def shift(name: str, body: TrafficBody, call: Mutation) -> dict[str, Any]:
    weights = dict(body.weights)
    return call.run(
        name, body.model_dump(), lambda who, if_match: call.ctx.changes.shift(name, weights, who=who, if_match=if_match)
    )


@router.put("/{name}/shadow", summary="Mirror a share of live traffic to a version", **mutation("shadow"))
async def shadow(name: str, body: ShadowBody, call: Mutation) -> dict[str, Any]:
    return call.run(
        name,
        body.model_dump(),
        lambda who, if_match: call.ctx.changes.set_shadow(name, body.version, body.percent, who=who, if_match=if_match),
    )


@router.delete(
    "/{name}/shadow", summary="Stop mirroring (one version, or all without ?version=)", **mutation("shadow-off")
)
async def stop_shadow(
    name: str, call: Mutation, version: Annotated[str | None, Query(min_length=1, max_length=253)] = None
) -> dict[str, Any]:
    return call.run(
        name,
        {"version": version},
        lambda who, if_match: call.ctx.changes.stop_shadow(name, version, who=who, if_match=if_match),
    )


@router.post("/{name}/promote", summary="Send 100% of the default split to one version", **mutation("promote"))
async def promote(name: str, body: PromoteBody, call: Mutation) -> dict[str, Any]:
    return call.run(
        name,
        body.model_dump(),
        lambda who, if_match: call.ctx.changes.promote(name, body.version, who=who, if_match=if_match),
    )


@router.post("/{name}/rollback", summary="Go back to the split before the last change", **mutation("rollback"))
async def rollback(name: str, call: Mutation) -> dict[str, Any]:
    return call.run(name, None, lambda who, if_match: call.ctx.changes.rollback(name, who=who, if_match=if_match))
