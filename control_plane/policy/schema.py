"""The switchyard/v1 policy schema: typed, validated, and strict about unknown fields.

Every model forbids extra keys: a misspelt field is an error, never silently
ignored (KServe once ignored ``canaryTrafficPercent`` and users lost traffic).
Durations are stored as integer milliseconds.

Every value that lands in an Envoy field is checked against what Envoy accepts
there (integer ranges of the protobuf field, RE2 syntax and program size,
characters a header value may hold), so a policy that validates is a policy
Envoy takes: a NACK is a state we handle, not a validation strategy.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from control_plane.policy.durations import DURATION_PATTERN, parse_duration_ms
from control_plane.policy.endpoints import parse_endpoint
from control_plane.policy.regex import check_re2

API_VERSION = "switchyard/v1"

# DNS-1123 labels, like Kubernetes object names: they become Envoy cluster and stat names.
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", to_lower=True)]
# Written as text ("5s"), held as milliseconds; the JSON Schema (and so the CRD) says what is written.
DurationMs = Annotated[
    int, BeforeValidator(parse_duration_ms), WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
]
Weight = Annotated[int, Field(strict=True, ge=0, le=100)]
Percent = Annotated[float, Field(strict=True, gt=0, le=100, allow_inf_nan=False)]
UINT32_MAX = 2**32 - 1  # google.protobuf.UInt32Value: thresholds and counts in Envoy
INT64_MAX = 2**63 - 1  # envoy.type.v3.Int64Range: the content-length match
Count = Annotated[int, Field(strict=True, ge=1, le=UINT32_MAX)]
ContentLength = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX - 1)]  # the range's end is exclusive


def _header_value(value: str) -> str:
    # Envoy's HTTP_HEADER_VALUE rule (paths and header matches): a request can
    # never carry these characters, and Envoy rejects configuration that does.
    if "\0" in value or "\r" in value or "\n" in value:
        raise ValueError(f"{value!r} contains NUL, CR or LF, which no HTTP header or path can hold")
    return value


HeaderValue = Annotated[str, AfterValidator(_header_value)]

RetryOn = Literal[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
]


_DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("connect-failure", "refused-stream")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(Strict):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)


def _check_endpoint(value: str) -> str:
    parse_endpoint(value)
    return value


EndpointText = Annotated[str, AfterValidator(_check_endpoint)]


# A Service port, by number or by name: an IANA_SVC_NAME as Kubernetes checks port names
# (hyphen-separated lowercase alphanumerics, one part holding a letter, at most 15 long).
PortRef = (
    Annotated[int, Field(strict=True, ge=1, le=65535)]
    | Annotated[str, StringConstraints(pattern=r"^([a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=15)]
)


class ServiceRef(Strict):
    """A Kubernetes Service in the resource's namespace, whose EndpointSlices give the endpoints."""

    name: Name
    port: PortRef
    grpc_port: PortRef | None = None  # the same Pods' gRPC inference port, if the model serves gRPC


class VersionSpec(Strict):
    endpoints: list[EndpointText] | None = Field(default=None, min_length=1)
    # The same replicas' gRPC ports (Open Inference Protocol over HTTP/2); declared
    # for every version of a model or for none, so a gRPC call can follow any split.
    grpc_endpoints: list[EndpointText] | None = Field(default=None, min_length=1)
    # Instead of endpoints: the Service whose ready endpoints serve this version
    # (Kubernetes mode; its EndpointSlices decide readiness and draining).
    service: ServiceRef | None = None

    @model_validator(mode="after")
    def _endpoints_or_service(self) -> VersionSpec:
        if (self.endpoints is None) == (self.service is None):
            raise ValueError("a version sets exactly one of endpoints and service")
        if self.service is not None and self.grpc_endpoints is not None:
            raise ValueError("a version with a service names its gRPC port as service.grpc_port, not grpc_endpoints")
        return self

    @property
    def serves_grpc(self) -> bool:
        return self.grpc_endpoints is not None or (self.service is not None and self.service.grpc_port is not None)


class ShadowSpec(Strict):
    version: Name
    percent: Percent = 100.0


def _exact_shorthand(value: Any) -> Any:
    # `x-user-tier: premium` is shorthand for `x-user-tier: {exact: premium}`.
    return {"exact": value} if isinstance(value, str) else value


class HeaderMatchSpec(Strict):
    exact: HeaderValue | None = None
    prefix: HeaderValue | None = Field(default=None, min_length=1)
    regex: Annotated[str, AfterValidator(check_re2)] | None = None
    present: Literal[True] | None = None
    absent: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderMatchSpec:
        chosen = [k for k in ("exact", "prefix", "regex", "present", "absent") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "a header match sets exactly one of exact, prefix, regex, present: true, absent: true"
                f" (got {', '.join(chosen) or 'none'})"
            )
        return self


class _OrExactShorthand:
    """JSON Schema of a header match: the object, or the plain string it is shorthand for."""

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [handler(core), {"type": "string"}]}


HeaderMatch = Annotated[HeaderMatchSpec, BeforeValidator(_exact_shorthand), _OrExactShorthand()]


class MatchSpec(Strict):
    headers: dict[HeaderName, HeaderMatch] = Field(default_factory=dict)
    min_content_length: ContentLength | None = None
    max_content_length: ContentLength | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> MatchSpec:
        if not self.headers and self.min_content_length is None and self.max_content_length is None:
            raise ValueError(
                "a rule's match needs at least one condition (headers, min_content_length,"
                " max_content_length); for a catch-all, change spec.traffic instead"
            )
        lo, hi = self.min_content_length, self.max_content_length
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_content_length ({lo}) is greater than max_content_length ({hi})")
        return self


class RuleSpec(Strict):
    name: Name
    match: MatchSpec
    traffic: dict[Name, Weight]
    shadow: list[ShadowSpec] | None = None  # None: inherit the model's shadow list


class PinningSpec(Strict):
    header: HeaderName | None = None
    body_field: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")] | None
    ) = None

    @model_validator(mode="after")
    def _something(self) -> PinningSpec:
        if self.header is None and self.body_field is None:
            raise ValueError("pinning needs a header, a body_field, or both")
        return self


class RetrySpec(Strict):
    attempts: Annotated[int, Field(strict=True, ge=0, le=10)] = 2
    on: list[RetryOn] = Field(default_factory=lambda: list(_DEFAULT_RETRY_ON), min_length=1)
    per_try_timeout: DurationMs | None = None


class HealthCheckSpec(Strict):
    path: Annotated[HeaderValue, StringConstraints(pattern=r"^/")]
    interval: DurationMs = 5000
    timeout: DurationMs = 1000
    healthy_threshold: Count = 1
    unhealthy_threshold: Count = 2


class OutlierDetectionSpec(Strict):
    consecutive_5xx: Count = 5
    interval: DurationMs = 10_000
    base_ejection_time: DurationMs = 30_000
    max_ejection_percent: Annotated[int, Field(strict=True, ge=1, le=100)] = 50


class SlowStartSpec(Strict):
    window: DurationMs = 10_000


class CanarySpec(Strict):
    """A progressive rollout of ``candidate`` against ``baseline``, gated on Envoy's statistics.

    The steps are the candidate's share of the default split; after the last one
    passes, the candidate gets 100%. ``steps`` or ``step_size`` (+ ``max_weight``).
    """

    candidate: Name
    baseline: Name | None = None  # None: the version with the most traffic when the rollout starts
    steps: list[Annotated[int, Field(strict=True, ge=1, le=100)]] | None = Field(default=None, min_length=1)
    step_size: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    max_weight: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    interval: DurationMs = 60_000
    max_error_rate: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] = 0.01  # 5xx share
    max_p99_latency: DurationMs | None = None  # absolute
    # relative to the baseline's p99
    max_p99_ratio: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None
    min_requests: Count = 20  # per interval; fewer is a failed check, never a pass
    failure_threshold: Count = 2  # consecutive failed checks that roll back
    progress_deadline: DurationMs = 600_000  # longest a step may go without advancing
    pause_deadline: DurationMs = 3_600_000  # a pause longer than this returns traffic to the baseline

    @model_validator(mode="after")
    def _steps(self) -> CanarySpec:
        if (self.steps is None) == (self.step_size is None):
            raise ValueError("a canary sets exactly one of steps (a list of weights) or step_size")
        if self.max_weight is not None and self.step_size is None:
            raise ValueError("max_weight goes with step_size; with steps, the last step is the maximum")
        if self.steps is not None and any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"steps must increase strictly (got {self.steps})")
        if self.interval < 500:
            raise ValueError(f"interval must be at least 500ms (got {self.interval}ms)")
        if self.candidate == self.baseline:
            raise ValueError(f"candidate and baseline are both {self.candidate!r}")
        return self

    def weights(self) -> list[int]:
        """The candidate's weight at each step (the last may be below 100: promotion follows)."""
        if self.steps is not None:
            return list(self.steps)
        size, top = self.step_size or 100, self.max_weight or 100
        return [*range(size, top, size), top]


def _check_domain(value: str) -> str:
    if value != "*" and not re.match(r"^(\*[.-])?[A-Za-z0-9.-]+(:\d+)?$|^[A-Za-z0-9.-]+[.-]\*$", value):
        raise ValueError(f"{value!r} is not a host name, '*', or a '*.'/'-*' wildcard")
    return value.lower()


def _check_path_prefix(value: str) -> str:
    # Routes match the prefix on path-segment boundaries (Envoy's path_separated_prefix):
    # "/sentiment" already covers "/sentiment/...", and that matcher rejects a trailing "/".
    if value != "/" and value.endswith("/"):
        raise ValueError(
            f"{value!r} must not end with '/': write {value.rstrip('/') or '/'!r}, "
            "which matches that path and everything under it"
        )
    if "?" in value or "#" in value:
        raise ValueError(f"{value!r} must not contain '?' or '#': it is matched against the path only")
    return value


class ModelRouteSpec(Strict):
    hosts: list[Annotated[str, AfterValidator(_check_domain)]] = Field(default_factory=lambda: ["*"], min_length=1)
    path_prefix: Annotated[HeaderValue, StringConstraints(pattern=r"^/"), AfterValidator(_check_path_prefix)] = "/"
    rewrite_prefix: Annotated[HeaderValue, StringConstraints(pattern=r"^/")] | None = None
    versions: dict[Name, VersionSpec] = Field(min_length=1)
    traffic: dict[Name, Weight] | None = None  # None is allowed only with a single version
    shadow: list[ShadowSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)
    pinning: PinningSpec | None = None
    timeout: DurationMs = 15_000
    connect_timeout: DurationMs = 1000
    retries: RetrySpec | None = None
    health_check: HealthCheckSpec | None = None
    outlier_detection: OutlierDetectionSpec | None = None
    slow_start: SlowStartSpec | None = Field(default_factory=SlowStartSpec)
    canary: CanarySpec | None = None


class ModelRoute(Strict):
    apiVersion: Literal["switchyard/v1"]
    kind: Literal["ModelRoute"]
    metadata: Metadata
    spec: ModelRouteSpec


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address to listen on") from None
    return value


class GatewaySpec(Strict):
    address: Annotated[str, AfterValidator(_check_ip)] = "0.0.0.0"
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 10000


class Gateway(Strict):
    apiVersion: Literal["switchyard/v1"]
    kind: Literal["Gateway"]
    metadata: Metadata
    spec: GatewaySpec = Field(default_factory=GatewaySpec)


class FleetVersionSpec(Strict):
    """How one route version is run: which trained model serves it, how many replicas."""

    model: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][-a-z0-9_.]*/[a-z0-9][-a-z0-9_.]*$")]
    replicas: Annotated[int, Field(strict=True, ge=1, le=64)] = 1
    max_batch_size: Annotated[int, Field(strict=True, ge=1, le=1024)] = 32
    max_delay_ms: Annotated[int, Field(strict=True, ge=0, le=10_000)] = 5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    args: list[str] = Field(default_factory=list)  # more `model_services serve` flags


class FleetSpec(Strict):
    versions: dict[Name, FleetVersionSpec] = Field(min_length=1)


class Fleet(Strict):
    """The replicas `switchyard up` (and docker-compose) run for one ModelRoute's versions."""

    apiVersion: Literal["switchyard/v1"]
    kind: Literal["Fleet"]
    metadata: Metadata  # the ModelRoute's name
    spec: FleetSpec


KINDS: dict[str, type[Strict]] = {"ModelRoute": ModelRoute, "Gateway": Gateway, "Fleet": Fleet}
