"""The Open Inference Protocol's gRPC definition, shared by both sides of the router.

``grpc_predict_v2.proto`` is the source; ``grpc_predict_v2.binpb`` is its compiled
descriptor set (``python -m model_services.protocol.compile`` writes it). Model
services build their message classes from it (``messages.py``); the control plane
hands the same bytes to Envoy, whose gRPC field extraction reads the model name out
of each call. This package imports nothing else of ``model_services``, so the
control-plane image carries it alone.
"""

from __future__ import annotations

from importlib import resources

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
PATH_PREFIX = f"/{SERVICE}/"  # every call's HTTP/2 :path starts with it
# Envoy's mirrored copy of a gRPC call carries this header (the service cannot see the
# authority, which Envoy suffixes with "-shadow" for REST), for shadow comparison.
MIRROR_HEADER = "x-switchyard-shadow"
DESCRIPTOR_SET = "grpc_predict_v2.binpb"


def descriptor_set() -> bytes:
    """The compiled ``FileDescriptorSet`` of ``grpc_predict_v2.proto``."""
    return resources.files(__package__).joinpath(DESCRIPTOR_SET).read_bytes()
