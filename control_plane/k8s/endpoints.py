"""Ready endpoints of Kubernetes Services, from their EndpointSlices.

A version that names a Service (``service: {name: sentiment-v3, port: http}``)
is served by whatever Pods the Service's EndpointSlices list as ready now, so
readiness probes, rollouts and Pod termination move Envoy's endpoints the way
they move kube-proxy's. The slices of a Service carry the label
``kubernetes.io/service-name``; one Service may have several slices.

An endpoint counts when the API server does not say otherwise: ``ready`` is not
False and ``terminating`` is not True (an absent condition means "unknown",
which Kubernetes says to read as ready). A terminating endpoint leaves at once;
its in-flight requests finish, since the model service drains on SIGTERM.

Ports: a name matches the slice port of that name (the Service port's name);
a number matches the slice port's number, which is the *target* (container)
port, not the Service port: EndpointSlices do not carry the Service port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from control_plane import ir
from control_plane.k8s.watch import Event

SERVICE_LABEL = "kubernetes.io/service-name"


def _counts(endpoint: Any) -> bool:
    conditions = endpoint.conditions
    if conditions is None:
        return True
    return conditions.ready is not False and conditions.terminating is not True


def _port_of(slice_: Any, wanted: int | str) -> int | None:
    for port in slice_.ports or ():
        if isinstance(wanted, str) and (port.name or "") == wanted:
            return int(port.port) if port.port is not None else None
        if isinstance(wanted, int) and port.port == wanted:
            return wanted
    return None


def ready_endpoints(slices: Iterable[Any], port: int | str | None) -> tuple[ir.Endpoint, ...]:
    """Every counted address of ``slices`` on ``port``, sorted and without repeats (None: no port, none)."""
    if port is None:
        return ()
    found: set[ir.Endpoint] = set()
    for slice_ in slices:
        number = _port_of(slice_, port)
        if number is None:
            continue
        is_ip = slice_.addressType != "FQDN"
        for endpoint in slice_.endpoints or ():
            if _counts(endpoint):
                found.update(ir.Endpoint(address, number, is_ip) for address in endpoint.addresses or ())
    return tuple(sorted(found, key=lambda e: (e.host, e.port)))


class EndpointSliceCache:
    """The EndpointSlices of one namespace, by Service; an informer keeps it current.

    ``on_change`` runs after every change that can alter some Service's ready
    endpoints (the controller retranslates; an unchanged result pushes nothing).
    """

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self._slices: dict[str, Any] = {}  # slice name -> slice

    def ready(self, service: ir.ServiceRef) -> tuple[tuple[ir.Endpoint, ...], tuple[ir.Endpoint, ...]]:
        slices = [s for s in self._slices.values() if _service_of(s) == service.name]
        return ready_endpoints(slices, service.port), ready_endpoints(slices, service.grpc_port)

    async def replace_all(self, objects: dict[str, Any]) -> None:
        self._slices = dict(objects)
        self.on_change()

    async def apply(self, event: Event) -> None:
        if event.kind == "DELETED":
            self._slices.pop(event.name, None)
        else:
            self._slices[event.name] = event.obj
        self.on_change()


def _service_of(slice_: Any) -> str | None:
    labels = slice_.metadata.labels if slice_.metadata is not None else None
    return (labels or {}).get(SERVICE_LABEL)
