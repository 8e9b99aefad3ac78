"""Each resource's status, as Gateway API reports it: ``Accepted`` and ``Programmed``.

- ``Accepted``: the newest spec (``observedGeneration``) validated. When it did not,
  ``status: "False"``, reason ``Invalid``, and the message lists the same
  ``field.path: message`` lines the file mode prints; the last accepted spec keeps
  serving.
- ``Programmed``: the accepted spec is in the snapshot the control plane serves and
  every connected Envoy has ACKed that snapshot (``envoys.current`` of
  ``envoys.connected``). ``Pending`` while some have not, or none is connected.
- ``effectiveTraffic``: the split Envoy applies now, versions without a ready
  endpoint (or failing probes) left out, as ``switchyard status`` shows it.

Only the leader writes, and only what differs from what the resource shows (a
merge patch of the status subresource), so N replicas do not fight and a quiet
system sends nothing. It runs every ``interval_s``: status follows Envoy ACKs and
endpoint changes as well as spec changes, and a failed write is simply redone.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from control_plane.engine.controller import Controller
from control_plane.k8s.kinds import CLASSES
from control_plane.k8s.source import ROLLOUT_KEY, KubernetesSource, Tracked, merge_patch_from
from control_plane.policy.yaml_source import parse_documents
from control_plane.translate.names import cluster_name
from control_plane.translate.weights import effective_weights
from control_plane.xds.nodes import NodeRegistry

log = logging.getLogger(__name__)

INTERVAL_S = 1.0


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, previous: dict[str, Any], now: float
) -> dict[str, Any]:
    """One condition; its ``lastTransitionTime`` moves only when its status does."""
    status = "True" if ok else "False"
    before = next((c for c in previous.get("conditions") or () if c.get("type") == kind), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else rfc3339(now)
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


class StatusWriter:
    def __init__(
        self,
        source: KubernetesSource,
        controller: Controller,
        nodes: NodeRegistry,
        client: AsyncClient,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.controller = controller
        self.nodes = nodes
        self.client = client
        self.is_leader = is_leader
        self.interval_s = interval_s
        self.clock = clock
        # origin -> (its resourceVersion then, the status written): not redone until the watch shows a newer one
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        self._parsed: dict[str, tuple[str, Any]] = {}  # origin -> (accepted text, its parsed document)

    async def run(self) -> None:
        while True:
            if self.is_leader() and self.source.synced:
                try:
                    await self.write_all()
                except asyncio.CancelledError:
                    raise
                except Exception:  # an API error or a bug: logged, and the next round tries again
                    log.exception("cannot write the status of the Kubernetes resources; retrying")
            await asyncio.sleep(self.interval_s)

    async def write_all(self) -> int:
        """Patch every resource whose status is not what it should be; how many were patched."""
        patched = 0
        tracked = self.source.resources()
        live = {t.origin for t in tracked}
        for origin in self._written.keys() - live:
            del self._written[origin]
        for resource in tracked:
            wanted = self.desired(resource)
            # ``rollout`` is the rollout runner's record (KubernetesSource.save_rollout): never patched here.
            shown = {k: v for k, v in resource.status.items() if k != ROLLOUT_KEY}
            if shown == wanted:
                continue
            if self._written.get(resource.origin) == (resource.resource_version, wanted):
                continue  # written; the watch has not brought the new version yet
            await self.client.patch(
                CLASSES[resource.kind].Status,
                resource.name,
                {"status": merge_patch_from(shown, wanted)},
                namespace=self.source.namespace,
                patch_type=PatchType.MERGE,
            )
            self._written[resource.origin] = (resource.resource_version, wanted)
            patched += 1
        return patched

    def desired(self, resource: Tracked) -> dict[str, Any]:
        now, previous, generation = self.clock(), resource.status, resource.generation
        if resource.errors:
            accepted = condition("Accepted", False, "Invalid", "\n".join(resource.problems), generation, previous, now)
        else:
            accepted = condition("Accepted", True, "Accepted", "the spec is valid", generation, previous, now)
        served = self._served(resource)
        snapshot = self.controller.cache.current
        connected = [n for n in self.nodes.all() if n.connected]
        current = sum(1 for n in connected if snapshot is not None and n.synced_snapshot == snapshot.version)
        if not served:
            why = self.controller.last_rejected.errors[0] if self.controller.last_rejected else "not published yet"
            programmed = condition(
                "Programmed", False, "Pending", f"not in the served configuration: {why}", generation, previous, now
            )
        else:
            everywhere = bool(connected) and current == len(connected)
            running = snapshot.version if snapshot else None
            message = f"{current} of {len(connected)} connected Envoys run snapshot {running}"
            reason = "Programmed" if everywhere else "Pending"
            programmed = condition("Programmed", everywhere, reason, message, generation, previous, now)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": [accepted, programmed],
            "envoys": {"connected": len(connected), "current": current},
            "snapshotVersion": snapshot.version if snapshot and served else None,
        }
        if resource.kind == "ModelRoute":
            status["effectiveTraffic"] = self._effective_traffic(resource.name) if served else None
        # Absent rather than null: a merge patch deletes a null, so a null would never read back equal.
        return {k: v for k, v in status.items() if v is not None}

    def _served(self, resource: Tracked) -> bool:
        """Whether the controller serves this resource's accepted spec (not an older one, or none)."""
        policies = self.controller.policies
        if resource.text is None or policies is None or resource.origin not in policies.files:
            return False
        documents = [m.source for m in policies.models if m.source.file == resource.origin]
        if policies.gateway is not None and policies.gateway.source.file == resource.origin:
            documents.append(policies.gateway.source)
        return bool(documents) and documents[0].data == self._parse(resource.origin, resource.text)

    def _parse(self, origin: str, text: str) -> Any:
        cached = self._parsed.get(origin)
        if cached is None or cached[0] != text:
            docs, _ = parse_documents(text, origin)
            cached = (text, docs[0].data if docs else None)
            self._parsed[origin] = cached
        return cached[1]

    def _effective_traffic(self, name: str) -> dict[str, int] | None:
        served = self.controller.served
        model = next((m for m in served.models if m.name == name), None) if served else None
        if model is None:
            return None
        unready = {v.name for v in model.versions if cluster_name(model.name, v.name) in self.controller.served_unready}
        return dict(effective_weights(model.split, unready))
