"""The protocol's message classes, built from the compiled descriptor set in a
descriptor pool of their own.

A private pool (rather than ``protoc``-generated modules in the default pool) lets a
process hold these beside other definitions of the same ``inference`` package, such
as the Triton client's, which would otherwise clash symbol by symbol.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from model_services.protocol import PACKAGE, SERVICE, descriptor_set

_files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set())
POOL = descriptor_pool.DescriptorPool()
for _file in _files.file:
    POOL.Add(_file)


def message_class(name: str) -> Any:
    """The class of the protocol message ``name`` (e.g. ``"ModelInferRequest"``).

    Typed ``Any``: its fields exist only at run time (no generated stubs)."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


ServerLiveRequest = message_class("ServerLiveRequest")
ServerLiveResponse = message_class("ServerLiveResponse")
ServerReadyRequest = message_class("ServerReadyRequest")
ServerReadyResponse = message_class("ServerReadyResponse")
ModelReadyRequest = message_class("ModelReadyRequest")
ModelReadyResponse = message_class("ModelReadyResponse")
ServerMetadataRequest = message_class("ServerMetadataRequest")
ServerMetadataResponse = message_class("ServerMetadataResponse")
ModelMetadataRequest = message_class("ModelMetadataRequest")
ModelMetadataResponse = message_class("ModelMetadataResponse")
ModelInferRequest = message_class("ModelInferRequest")
ModelInferResponse = message_class("ModelInferResponse")

# Each RPC the service answers: method name -> (request class, response class).
METHODS: dict[str, tuple[Any, Any]] = {
    method.name: (message_class(method.input_type.name), message_class(method.output_type.name))
    for method in POOL.FindServiceByName(SERVICE).methods
}
