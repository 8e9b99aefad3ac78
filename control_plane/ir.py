"""The routing intent: what should happen to traffic, independent of YAML and of Envoy.

Frozen, hashable dataclasses, so the translator can memoise per model and the
snapshot layer can tell when nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

HeaderMatchKind = Literal["exact", "prefix", "regex", "present", "absent"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    is_ip: bool  # False: a DNS name that Envoy must resolve itself

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Kubernetes Service (in the policy's namespace) and its ports, by number or name."""

    name: str
    port: int | str
    grpc_port: int | str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    endpoints: tuple[Endpoint, ...]
    grpc_endpoints: tuple[Endpoint, ...] = ()  # empty: the version serves no gRPC
    # Set: the endpoints above are the Service's ready endpoints, filled in from its
    # EndpointSlices before translation (empty until then, and while none is ready).
    service: ServiceRef | None = None

    @property
    def grpc(self) -> bool:
        return bool(self.grpc_endpoints) or (self.service is not None and self.service.grpc_port is not None)


@dataclass(frozen=True, slots=True)
class Split:
    """Integer weights in declaration order; the policy layer guarantees they sum to 100."""

    weights: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, int]:
        return dict(self.weights)


@dataclass(frozen=True, slots=True)
class Mirror:
    version: str
    percent: float


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    name: str
    kind: HeaderMatchKind
    value: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    headers: tuple[HeaderCondition, ...]
    min_content_length: int | None
    max_content_length: int | None
    split: Split
    mirrors: tuple[Mirror, ...]


@dataclass(frozen=True, slots=True)
class Pinning:
    header: str | None
    body_field: tuple[str, ...] | None  # JSON path into the request body


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int
    on: tuple[str, ...]
    per_try_timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str
    interval_ms: int
    timeout_ms: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx: int
    interval_ms: int
    base_ejection_ms: int
    max_ejection_percent: int


@dataclass(frozen=True, slots=True)
class Canary:
    """How to roll ``candidate`` out; the rollout runner, not the translator, acts on it."""

    candidate: str
    baseline: str | None
    weights: tuple[int, ...]  # the candidate's share at each step
    interval_ms: int
    max_error_rate: float
    max_p99_ms: int | None
    max_p99_ratio: float | None
    min_requests: int
    failure_threshold: int
    progress_deadline_ms: int
    pause_deadline_ms: int


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    hosts: tuple[str, ...]
    path_prefix: str
    rewrite_prefix: str | None
    versions: tuple[Version, ...]
    split: Split
    mirrors: tuple[Mirror, ...]
    rules: tuple[Rule, ...]
    pinning: Pinning | None
    timeout_ms: int
    connect_timeout_ms: int
    retry: Retry | None
    health_check: HealthCheck | None
    outlier_detection: OutlierDetection | None
    slow_start_ms: int | None
    canary: Canary | None = None
    # The translator looks every model up by value on each reload (10,000 at a time);
    # the generated hash would walk every nested field each time, so it is kept.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        if not self._hash:
            object.__setattr__(self, "_hash", hash(tuple(getattr(self, name) for name in _MODEL_FIELDS)))
        return self._hash

    @property
    def grpc(self) -> bool:
        """Whether the model serves the gRPC inference protocol (every version or none does)."""
        return self.versions[0].grpc

    def version(self, name: str) -> Version:
        for version in self.versions:
            if version.name == name:
                return version
        raise KeyError(name)


_MODEL_FIELDS = tuple(f.name for f in fields(Model) if f.compare)


@dataclass(frozen=True, slots=True)
class Listener:
    address: str = "0.0.0.0"
    port: int = 10000


@dataclass(frozen=True, slots=True)
class RoutingIntent:
    listener: Listener
    models: tuple[Model, ...]

    def model(self, name: str) -> Model:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)
