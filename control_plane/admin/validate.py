"""``POST /v1/validate``: a dry run of a policy document or a proposed change.

Answers 200 with the diff of Envoy resources it would push, or a 4xx with
``valid: false`` and the same ``file:line: field: message`` lines that
``switchyard validate`` prints and a reload logs (422; 404 for an unknown model,
409 when the files on disk are invalid). Nothing is written and nothing is
published. The work runs in a thread, off the event loop, so a large or
hostile document cannot stall xDS or the rest of the API (the parser's own
limits bound how long it takes).
"""

from __future__ import annotations

import asyncio
import difflib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from control_plane.admin.context import AdminContext, Context, Reader
from control_plane.admin.errors import ErrorBody, http_status
from control_plane.admin.models import VersionName, Weight
from control_plane.engine.controller import translation_errors
from control_plane.ir import RoutingIntent
from control_plane.operations.changes import (
    ChangeError,
    Conflict,
    Invalid,
    Planner,
    mirror,
    promote_to,
    shift_to,
    unmirror,
)
from control_plane.policy.compile import to_intent
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import PolicySet, load_texts
from control_plane.policy.removals import removal_errors
from control_plane.policy.schema import Percent
from control_plane.policy.yaml_source import MAX_FILE_BYTES
from control_plane.translate import translate
from control_plane.translate.render import resources_by_type

router = APIRouter(tags=["validate"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShiftChange(_Body):
    action: Literal["shift"]
    model: str
    weights: dict[VersionName, Weight] = Field(min_length=1)


class ShadowChange(_Body):
    action: Literal["shadow"]
    model: str
    version: VersionName
    percent: Percent = 100


class ShadowOffChange(_Body):
    action: Literal["shadow-off"]
    model: str
    version: VersionName | None = None


class PromoteChange(_Body):
    action: Literal["promote"]
    model: str
    version: VersionName


class RollbackChange(_Body):
    action: Literal["rollback"]
    model: str


ProposedChange = Annotated[
    ShiftChange | ShadowChange | ShadowOffChange | PromoteChange | RollbackChange, Field(discriminator="action")
]


class ValidateBody(_Body):
    policy: str | None = Field(default=None, max_length=MAX_FILE_BYTES, description="YAML text of one policy file")
    file: str | None = Field(
        default=None,
        max_length=4096,
        description="The policy file `policy` replaces (path or unique file name); omitted: a new file",
    )
    change: ProposedChange | None = None

    @model_validator(mode="after")
    def _one(self) -> ValidateBody:
        if (self.policy is None) == (self.change is None):
            raise ValueError("give exactly one of `policy` (YAML text) or `change` (a proposed change)")
        if self.file is not None and self.policy is None:
            raise ValueError("`file` goes with `policy`")
        return self


class ValidationReport(ErrorBody):
    """An error body (a request that is itself malformed gets only that) plus the verdict."""

    valid: bool = False
    diff: list[dict[str, Any]] = Field(
        default_factory=list, description="Per Envoy resource that would change: type, name, op, diff"
    )


_INVALID = {"model": ValidationReport, "description": "Invalid: `errors` says what and where"}


@router.post(
    "/v1/validate",
    summary="Dry run: errors, or the Envoy resources diff; applies nothing",
    response_model=ValidationReport,
    responses={404: _INVALID, 409: _INVALID, 422: _INVALID},
)
async def validate(body: ValidateBody, ctx: Context, who: Reader) -> JSONResponse:
    report = await asyncio.to_thread(_report, ctx, body)
    return JSONResponse(report.model_dump(), status_code=report.status)


def _report(ctx: AdminContext, body: ValidateBody) -> ValidationReport:
    try:
        after = _policy_set(ctx, body.policy, body.file) if body.change is None else _planned(ctx, body.change)
        proposed = _intent(ctx, after)
        problems = translation_errors(after, proposed)
        if problems:
            raise PolicyErrors(problems)
    except ChangeError as exc:
        return ValidationReport(
            status=http_status(exc), valid=False, message=exc.message, errors=exc.errors or [exc.message], diff=[]
        )
    except PolicyErrors as exc:
        errors = [str(e) for e in exc.errors]
        return ValidationReport(status=422, valid=False, message="the policies are invalid", errors=errors, diff=[])
    before = ctx.controller.intent or RoutingIntent(proposed.listener, ())
    diff = resource_diff(before, proposed, ctx.controller.unready)
    message = f"valid; {len(diff)} Envoy resource(s) would change" if diff else "valid; nothing would change"
    return ValidationReport(status=200, valid=True, message=message, errors=[], diff=diff)


def _intent(ctx: AdminContext, policies: PolicySet) -> RoutingIntent:
    """The intent the controller would build (with `switchyard up`'s local overrides, if any)."""
    return to_intent(policies, ctx.controller.overrides)


def _policy_set(ctx: AdminContext, text: str | None, file: str | None) -> PolicySet:
    assert text is not None
    try:
        texts = ctx.controller.source.read()
    except PolicyErrors as exc:
        raise Conflict("the policy files on disk cannot be read", [str(e) for e in exc.errors]) from None
    target = "<proposed>.yaml"
    if file is not None:
        matches = [name for name in texts if name == file or name.rsplit("/", 1)[-1] == file]
        if len(matches) != 1:
            known = ", ".join(sorted(texts)) or "none"
            what = "is ambiguous" if matches else "is not one of the policy files"
            raise Invalid(f"file {file!r} {what} (policy files: {known})")
        target = matches[0]
    after = load_texts({**texts, target: text})
    controller = ctx.controller
    held = removal_errors(controller.policies, after, where=controller.origin, allow_empty=controller.allow_empty)
    if held:
        raise PolicyErrors(held)
    return after


def _planned(ctx: AdminContext, change: Any) -> PolicySet:
    planner: Planner
    if isinstance(change, ShiftChange):
        planner = shift_to(dict(change.weights))
    elif isinstance(change, ShadowChange):
        planner = mirror(change.version, change.percent)
    elif isinstance(change, ShadowOffChange):
        planner = unmirror(change.version)
    elif isinstance(change, PromoteChange):
        planner = promote_to(change.version)
    else:
        planner = ctx.changes.back()
    return ctx.changes.plan(change.model, planner).after


def resource_diff(before: RoutingIntent, after: RoutingIntent, unready: frozenset[str]) -> list[dict[str, Any]]:
    """Per Envoy resource: added, removed or changed, with a unified diff of its JSON."""
    old = resources_by_type(translate(before, unready))
    new = resources_by_type(translate(after, unready))
    out: list[dict[str, Any]] = []
    for kind in new:
        olds = {r.get("name", r.get("cluster_name", "")): r for r in old.get(kind, [])}
        news = {r.get("name", r.get("cluster_name", "")): r for r in new[kind]}
        for name in sorted(olds.keys() | news.keys()):
            a, b = olds.get(name), news.get(name)
            if a == b:
                continue
            op = "added" if a is None else "removed" if b is None else "changed"
            out.append(
                {
                    "type": kind,
                    "name": name,
                    "op": op,
                    "diff": "".join(
                        difflib.unified_diff(
                            _lines(a), _lines(b), f"{kind}/{name} (now)", f"{kind}/{name} (proposed)", n=2
                        )
                    ),
                }
            )
    return out


def _lines(resource: dict[str, Any] | None) -> list[str]:
    return [] if resource is None else json.dumps(resource, indent=2, sort_keys=True).splitlines(keepends=True)
