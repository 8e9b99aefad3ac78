"""Ask the real Envoy whether it accepts translated resources: ``envoy --mode validate``.

xDS resources are made static for this (a route configuration inline in its
listener, endpoints inline in their cluster), which keeps every field Envoy
validates, then Envoy parses and validates the whole configuration as it would
on an ADS push, without binding ports or resolving names.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from typing import Any

from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resources
from control_plane.translate.render import to_plain
from control_plane.xds.envoy_binary import envoy_binary


def static_bootstrap(resources: Resources) -> dict[str, Any]:
    by_type = resources.messages()
    routes = {name: to_plain(m) for name, m in by_type.get(ROUTE, {}).items()}
    assignments = {name: to_plain(m) for name, m in by_type.get(ENDPOINT, {}).items()}
    clusters = []
    for name, message in by_type.get(CLUSTER, {}).items():
        cluster = to_plain(message)
        if cluster.get("type") == "EDS":
            cluster["type"] = "STATIC"
            cluster.pop("eds_cluster_config", None)
            cluster["load_assignment"] = assignments[name]
        clusters.append(cluster)
    listeners = []
    for message in by_type.get(LISTENER, {}).values():
        listener = to_plain(message)
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                config = network_filter.get("typed_config", {})
                if "rds" in config:
                    config["route_config"] = routes[config.pop("rds")["route_config_name"]]
        listeners.append(listener)
    return {"static_resources": {"listeners": listeners, "clusters": clusters}}


def envoy_rejects(resources: Resources) -> str | None:
    """None if Envoy accepts ``resources``; otherwise Envoy's error message."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as config:
        json.dump(static_bootstrap(resources), config)
        config.flush()
        result = subprocess.run(
            [str(envoy_binary()), "--mode", "validate", "-c", config.name, "-l", "critical", "--disable-hot-restart"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if result.returncode == 0:
        return None
    return (result.stdout + result.stderr).strip()[-2000:] or f"envoy exited {result.returncode}"
