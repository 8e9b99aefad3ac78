"""The commands that run each part of the system.

`switchyard up` runs them as local processes; docker-compose.yml runs the same
commands in containers (tests/unit/test_compose.py checks that they agree).
Only addresses, ports and paths differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from control_plane.policy.schema import FleetVersionSpec

# Behind Envoy a replica keeps serving this long after SIGTERM while reporting not
# ready, so Envoy's health check moves traffic away before the listener closes.
DRAIN_GRACE_S = 2.0


def build_store(python: str, out: str | Path) -> list[str]:
    # --if-missing: a restart (or `docker compose up` again) does not retrain or swap versions.
    return [python, "-m", "model_services", "build", "--out", str(out), "--if-missing"]


def serve_model(python: str, *, model_dir: str | Path, host: str, port: int, args: Sequence[str] = ()) -> list[str]:
    """What serves one model version directory: every replica, test and benchmark runs this."""
    where = ["--host", host, "--port", str(port), "--model-dir", str(model_dir)]
    return [python, "-m", "model_services", "serve", *where, *args]


def model_service(
    python: str,
    *,
    model_dir: str | Path,
    served_version: str,
    spec: FleetVersionSpec,
    host: str,
    port: int,
    report_url: str | None = None,
    redis_url: str | None = None,
    grpc_port: int | None = None,
) -> list[str]:
    # --grpc-port: the Open Inference Protocol over gRPC too, for models that route it.
    grpc = ["--grpc-port", str(grpc_port)] if grpc_port is not None else []
    # --report-url: answers go to the control plane's shadow collector (off the request path).
    report = ["--report-url", report_url] if report_url else []
    # --redis-url enables async jobs (/v1/jobs); without it they answer 503.
    jobs = ["--redis-url", redis_url] if redis_url else []
    return serve_model(python, model_dir=model_dir, host=host, port=port, args=[
        "--served-version", served_version,
        "--max-batch-size", str(spec.max_batch_size),
        "--max-delay-ms", str(spec.max_delay_ms),
        "--device", spec.device,
        "--drain-grace-s", str(DRAIN_GRACE_S),
        *grpc,
        *report,
        *jobs,
        *spec.args,
    ])  # fmt: skip


def control_plane(
    python: str,
    *,
    policies: str | Path | None,  # None: the caller adds --kubernetes
    xds_address: str,
    xds_port: int,
    admin_address: str,
    admin_port: int,
    overrides: str | Path | None = None,
    tokens: str | Path | None = None,
    state_dir: str | Path | None = None,
    envoy_admin: str | None = None,
) -> list[str]:
    args = [
        python, "-m", "control_plane", "serve",
        *(["--policies", str(policies)] if policies is not None else []),
        "--xds-address", xds_address,
        "--xds-port", str(xds_port),
        "--admin-address", admin_address,
        "--admin-port", str(admin_port),
    ]  # fmt: skip
    if overrides is not None:
        args += ["--overrides", str(overrides)]
    if tokens is not None:  # required whenever the admin API listens beyond loopback
        args += ["--tokens", str(tokens)]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    if envoy_admin is not None:  # Envoy's admin on a wildcard address cannot announce itself
        args += ["--envoy-admin", envoy_admin]
    return args


def envoy(binary: str | Path, *, config: str | Path) -> list[str]:
    # A dynamic base id lets several Envoys share a host (tests, benchmarks, `up` beside them).
    return [
        str(binary),
        "-c",
        str(config),
        "--use-dynamic-base-id",
        "--log-level",
        "warn",
        "--drain-time-s",
        "2",
    ]
