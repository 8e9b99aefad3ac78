"""Compile ``grpc_predict_v2.proto`` into the descriptor set both sides load.

    python -m model_services.protocol.compile          # rewrite grpc_predict_v2.binpb
    python -m model_services.protocol.compile --check  # exit 1 if it is out of date

Needs ``grpcio-tools`` (a dev dependency); serving only reads the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROTO = "grpc_predict_v2.proto"


def compiled() -> bytes:
    from grpc_tools import protoc  # dev-only: imported here so serving never needs it

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.binpb"
        rc = protoc.main(["protoc", f"--proto_path={HERE}", f"--descriptor_set_out={out}", PROTO])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {HERE / PROTO} (exit {rc})")
        return out.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the descriptor set is out of date")
    args = parser.parse_args(argv)
    from model_services.protocol import DESCRIPTOR_SET

    target = HERE / DESCRIPTOR_SET
    fresh = compiled()
    if args.check:
        if target.read_bytes() != fresh:
            print(f"{target} is out of date: run python -m model_services.protocol.compile", file=sys.stderr)
            return 1
        return 0
    target.write_bytes(fresh)
    print(f"wrote {target} ({len(fresh)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
