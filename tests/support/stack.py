"""A whole routing stack on loopback: upstreams, `switchyard serve`, and Envoy."""

from __future__ import annotations

import collections
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import ControlPlane, Envoy, free_port, wait_for
from tests.support.upstream import VersionUpstream

VERSIONS = ("sentiment-v3", "sentiment-v4", "sentiment-v4-large", "sentiment-v5")


class Stack:
    def __init__(self, workdir: Path, *, delta: bool) -> None:
        self.workdir = workdir
        self.policy_dir = workdir / "policies"
        self.policy_dir.mkdir()
        self.policy_file = self.policy_dir / "sentiment.yaml"
        self.listener_port = free_port()
        self.upstreams = {name: VersionUpstream(name) for name in VERSIONS}
        self.delta = delta
        self.write(self.policy())
        self.control_plane = ControlPlane(self.policy_dir, workdir).start()
        self.envoy = Envoy(self.control_plane.xds_port, workdir, delta=delta).start()
        self.url = f"http://127.0.0.1:{self.listener_port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)
        self.wait_synced()
        wait_for(
            lambda: self.client.post("/v1/predict", json={"text": "hi"}).status_code == 200,
            what="first route",
        )

    # -- policy ---------------------------------------------------------------------

    def policy(self, spec_extra: str = "", traffic: str = "{sentiment-v3: 90, sentiment-v4: 10}") -> str:
        """The test policy: four versions, the given default split, plus extra spec lines."""
        versions = "\n".join(f'    {n}: {{endpoints: ["{u.address}"]}}' for n, u in self.upstreams.items())
        extra = textwrap.indent(textwrap.dedent(spec_extra).strip(), "  ")
        return (
            "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gateway}\n"
            f"spec: {{address: 127.0.0.1, port: {self.listener_port}}}\n"
            "---\n"
            "apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {name: sentiment}\nspec:\n"
            f"  versions:\n{versions}\n"
            f"  traffic: {traffic}\n"
            "  health_check: {path: /v2/health/ready, interval: 200ms, unhealthy_threshold: 1}\n"
            f"{extra}\n"
        )

    def write(self, text: str) -> None:
        tmp = self.policy_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.policy_file)

    def apply(self, text: str) -> dict[str, Any]:
        """Write a policy and wait until Envoy runs a snapshot that includes it.

        Readiness publishes snapshots too: the upstreams an edit replaces turn
        unready just before it (see ``retarget``), so the first new version after
        the write may be a readiness change that the edit then supersedes. Waiting
        for that version made Envoy look stuck ("never reports synced") while it had
        in fact moved on to the current one. So: wait for the control plane to accept
        the file, then for Envoy to run whatever is current.
        """
        written_at = time.time()
        self.write(text)

        def accepted() -> bool:
            reloads = self.control_plane.status()["policy"]["reloads"]
            return any(r["accepted"] and r["at"] >= written_at for r in reloads)

        wait_for(accepted, what="the control plane to accept the edit")
        return self.wait_synced()

    def wait_synced(self, version: str | None = None) -> dict[str, Any]:
        def synced() -> dict[str, Any] | None:
            status = self.control_plane.status()
            want = version or status["snapshot_version"]
            nodes = [n for n in status["envoys"] if n["node_id"] == self.envoy.node_id and n["connected"]]
            ok = (
                want is not None
                and nodes
                and nodes[0]["synced_snapshot"] == want
                and want == status["snapshot_version"]
            )
            return status if ok else None

        try:
            return wait_for(synced, what="Envoy to ACK the current snapshot")
        except TimeoutError as exc:  # say what the control plane saw: which type is stuck where
            status = self.control_plane.status()
            seen = {k: status[k] for k in ("snapshot_version", "envoys", "rejected_snapshots")}
            raise TimeoutError(f"{exc}; control plane status: {dump(seen)}") from exc

    # -- traffic --------------------------------------------------------------------

    def send(self, n: int, **request: Any) -> collections.Counter[tuple[int, str | None]]:
        """``n`` requests; counts of (status, version that answered)."""
        counts: collections.Counter[tuple[int, str | None]] = collections.Counter()
        if "content" not in request:
            request.setdefault("json", {"text": "This product is terrible"})
        for _ in range(n):
            response = self.client.post("/v1/predict", **request)
            counts[(response.status_code, response.headers.get("x-model-version"))] += 1
        return counts

    def one(self, **request: Any) -> httpx.Response:
        if "content" not in request:
            request.setdefault("json", {"text": "This product is terrible"})
        return self.client.post("/v1/predict", **request)

    def reset_counts(self) -> None:
        for upstream in self.upstreams.values():
            upstream.reset()

    def wait_shadow(self, version: str, at_least: int, timeout: float = 10) -> int:
        """Mirrored requests are fire-and-forget: wait until they have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.upstreams[version].count("shadow") < at_least:
            time.sleep(0.05)
        return self.upstreams[version].count("shadow")

    def close(self) -> None:
        self.client.close()
        self.envoy.stop()
        self.control_plane.stop()
        for upstream in self.upstreams.values():
            upstream.close()


def dump(obj: object) -> str:
    return json.dumps(obj, indent=2, default=str)


def retarget(stack: Stack, text: str, addresses: dict[str, str]) -> None:
    """Apply ``text`` with these versions' fake upstreams replaced by ``addresses``.

    Envoy keeps a host removed by EDS while it still passes active health checks,
    so the replaced upstreams first turn unready; this returns once Envoy's
    clusters hold only the new hosts and those have passed their first check.
    """
    for version, address in addresses.items():
        text = text.replace(stack.upstreams[version].address, address)
        stack.upstreams[version].ready = False
    stack.apply(text)

    def only_new_and_healthy() -> bool:
        lines = httpx.get(f"{stack.envoy.admin}/clusters", timeout=5).text.splitlines()
        for version, address in addresses.items():
            prefix = f"sentiment/{version}::"
            flags = {
                line.split("::")[1]: line.rsplit("::", 1)[-1]
                for line in lines
                if line.startswith(prefix) and "::health_flags::" in line
            }
            # A new host takes traffic only after its first active health check passes.
            if flags != {address: "healthy"}:
                return False
        return True

    wait_for(only_new_and_healthy, what="Envoy to drop the replaced upstreams and pass the new ones' checks")
