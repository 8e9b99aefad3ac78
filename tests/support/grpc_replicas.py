"""Model services that answer gRPC too, and the policy that routes both protocols to them."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.procs import ModelService, free_port


class GrpcReplica:
    """One ``model_services serve`` with ``--grpc-port``; ``grpc_address`` is that port."""

    def __init__(self, model_dir: Path, workdir: Path, version: str, *args: str) -> None:
        grpc_port = free_port()
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        self.service = ModelService(
            model_dir,
            workdir / f"{version}.log",
            *("--served-version", version, "--max-delay-ms", "1", "--grpc-port", str(grpc_port), *args),
        )


@contextmanager
def running_replicas(model_dir: Path, workdir: Path, versions: Sequence[str]) -> Iterator[dict[str, GrpcReplica]]:
    """One ready replica per version (the same trained model under each name), stopped after."""
    started = {v: GrpcReplica(model_dir, workdir, v) for v in versions}
    try:
        for replica in started.values():
            replica.service.wait_ready()
        yield started
    finally:
        for replica in started.values():
            replica.service.stop()


def grpc_policy(
    listener_port: int, replicas: Mapping[str, GrpcReplica], spec: str = "", model: str = "sentiment"
) -> str:
    """A Gateway on ``listener_port`` and one ModelRoute whose versions are ``replicas``
    (HTTP and gRPC endpoints), with ``spec`` lines added to its spec."""
    versions = "\n".join(
        f'    {v}: {{endpoints: ["{r.service.address}"], grpc_endpoints: ["{r.grpc_address}"]}}'
        for v, r in replicas.items()
    )
    extra = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gateway}\n"
        f"spec: {{address: 127.0.0.1, port: {listener_port}}}\n---\n"
        f"apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {{name: {model}}}\nspec:\n"
        f"  versions:\n{versions}\n{extra}\n"
    )
