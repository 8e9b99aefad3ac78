"""Shared pieces of the routing benchmarks: processes, a fast upstream, probes, output."""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, TypeVar

from control_plane.percentiles import percentile as shared_percentile
from control_plane.xds.bootstrap import bootstrap_yaml
from control_plane.xds.envoy_binary import envoy_binary
from tests.support.procs import ControlPlane, Process, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

T = TypeVar("T")

__all__ = ["REPO", "RESULTS", "ControlPlane", "free_port", "wait_for"]


def get(port: int, path: str = "/", host: str = "localhost", headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"host": host, **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Probe:
    """One keep-alive HTTP/1.1 connection for polling the data path quickly."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def get(self, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """(status, the ``x-upstream`` response header)."""
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers={"host": host, **(headers or {})})
                response = self.conn.getresponse()
                response.read()
                return response.status, response.getheader("x-upstream", "")
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def envoy_command(config: Path, log_level: str = "error") -> list[str]:
    return [
        str(envoy_binary()),
        "-c",
        str(config),
        "--use-dynamic-base-id",
        "--concurrency",
        "1",  # every arm gets one worker thread: the box has 2 cores and runs the client too
        "--log-level",
        log_level,
        "--drain-time-s",
        "1",
    ]


class StaticEnvoy:
    """An Envoy with a static bootstrap: the fast upstream, or the bare-hop proxy."""

    def __init__(self, name: str, workdir: Path, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]):
        self.admin_port = free_port()
        config = {
            "admin": {"address": _socket(self.admin_port)},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        }
        self.config = workdir / f"{name}.json"
        self.config.write_text(json.dumps(config, indent=1))  # JSON is YAML; Envoy reads both
        self.process = Process(envoy_command(self.config), workdir / f"{name}.log")
        wait_for(lambda: get(self.admin_port, "/ready") == 200, 30, f"{name} to start", process=self.process)

    def stop(self) -> None:
        self.process.stop()


def _socket(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _hcm(name: str, route_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager",
            "stat_prefix": name,
            "route_config": route_config,
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        },
    }


def direct_response_listener(name: str, port: int, body: str = '{"ok":true}') -> dict[str, Any]:
    """A listener that answers every request itself with 200 and ``x-upstream: <name>``."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": body}},
        "response_headers_to_add": [{"header": {"key": "x-upstream", "value": name}}],
    }
    vhost = {"name": name, "domains": ["*"], "routes": [route]}
    return {
        "name": name,
        "address": _socket(port),
        "filter_chains": [{"filters": [_hcm(name, {"name": name, "virtual_hosts": [vhost]})]}],
    }


def proxy_listener(name: str, port: int, cluster: str) -> dict[str, Any]:
    """The bare hop: every request to one static cluster, nothing else configured."""
    vhost = {
        "name": name,
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
    }
    return {
        "name": name,
        "address": _socket(port),
        "filter_chains": [{"filters": [_hcm(name, {"name": name, "virtual_hosts": [vhost]})]}],
    }


def static_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(port)}}]}],
        },
    }


class AdsEnvoy:
    """Envoy configured by the control plane (bootstrap from ``switchyard bootstrap``)."""

    def __init__(self, xds_port: int, workdir: Path, timeout: float = 120, delta: bool = False) -> None:
        self.admin_port = free_port()
        config = workdir / f"envoy-ads-{self.admin_port}.yaml"
        config.write_text(
            bootstrap_yaml("127.0.0.1", xds_port, admin_port=self.admin_port, node_id="bench", delta=delta)
        )
        self.process = Process(envoy_command(config), workdir / f"envoy-ads-{self.admin_port}.log")
        wait_for(
            lambda: get(self.admin_port, "/ready") == 200,
            timeout,
            "Envoy to load its xDS configuration",
            process=self.process,
        )

    def rss_mib(self) -> float:
        return rss_mib(self.process.proc.pid)

    def stop(self) -> None:
        self.process.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def environment() -> dict[str, Any]:
    envoy_version = subprocess.run(
        [str(envoy_binary()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "envoy": envoy_version.split("version:")[-1].strip(),
        "load_average_at_start": os.getloadavg(),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def percentile(values: list[float], p: float) -> float:
    """The shared nearest-rank percentile; NaN (not None) for no values, so tables print it."""
    found = shared_percentile(values, p)
    return math.nan if found is None else found
