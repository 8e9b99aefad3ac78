"""The Open Inference Protocol's binary tensor data extension (Triton's ``binary_tensor_data``).

What ``tritonclient`` and ``perf_analyzer`` send by default: the body is a JSON
header of ``Inference-Header-Content-Length`` bytes, followed by the raw data of
every input whose ``parameters.binary_data_size`` is set, in input order. BYTES
elements are each a 4-byte little-endian length and the bytes; numeric types are
their little-endian values, row-major. Outputs come back the same way when the
request asks (``outputs[].parameters.binary_data``, or ``binary_data_output`` for
all of them).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_services.api.errors import ApiError
from model_services.api.schemas import InferOutput, InferRequest

EXTENSION = "binary_tensor_data"
HEADER = "inference-header-content-length"
_LENGTH = struct.Struct("<I")

# Numeric tensor types and their little-endian numpy equivalents.
NUMERIC: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def header_length(raw: str | None, body_length: int) -> int | None:
    """The JSON header's length from the request header; None when the request is plain JSON."""
    if raw is None:
        return None
    if not raw.strip().isdigit() or int(raw) > body_length:
        raise ApiError(
            422,
            "invalid_header",
            f"Inference-Header-Content-Length must be a byte count within the {body_length}-byte body, not {raw!r}",
        )
    return int(raw)


def attach_binary_inputs(request: InferRequest, data: bytes) -> None:
    """Decode the binary part of a request into each input's ``data``, checking every size."""
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        where = f"inputs[{tensor.name}]"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ApiError(422, "invalid_input", f"{where}.parameters.binary_data_size must be a byte count")
        if tensor.data:
            raise ApiError(422, "invalid_input", f"{where} has both JSON data and binary_data_size")
        chunk = data[offset : offset + size]
        if len(chunk) < size:
            raise ApiError(
                422, "invalid_input", f"{where} declares {size} bytes of binary data; only {len(chunk)} remain"
            )
        offset += size
        tensor.data = decode(tensor.datatype, chunk, where)
    if offset != len(data):
        raise ApiError(
            422, "invalid_input", f"{len(data) - offset} bytes after the inputs' binary data belong to no input"
        )


def decode(datatype: str, chunk: bytes, where: str) -> list[Any]:
    if datatype == "BYTES":
        return _decode_bytes(chunk, where)
    dtype = NUMERIC.get(datatype)
    if dtype is None:
        raise ApiError(422, "invalid_input", f"{where}: binary data of datatype {datatype!r} is not supported")
    width = np.dtype(dtype).itemsize
    if len(chunk) % width:
        raise ApiError(422, "invalid_input", f"{where}: {len(chunk)} bytes is not a whole number of {datatype}")
    values: list[Any] = np.frombuffer(chunk, dtype=dtype).tolist()
    return values


def _decode_bytes(chunk: bytes, where: str) -> list[Any]:
    items: list[Any] = []
    offset = 0
    while offset < len(chunk):
        if offset + _LENGTH.size > len(chunk):
            raise ApiError(422, "invalid_input", f"{where}: a BYTES element's 4-byte length is cut short")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += _LENGTH.size
        element = chunk[offset : offset + length]
        if len(element) < length:
            raise ApiError(422, "invalid_input", f"{where}: a BYTES element of {length} bytes is cut short")
        offset += length
        try:
            items.append(element.decode())
        except UnicodeDecodeError:
            raise ApiError(422, "invalid_input", f"{where}: BYTES elements must be UTF-8 text") from None
    return items


def binary_outputs(request: InferRequest, names: Sequence[str]) -> set[str]:
    """Which of ``names`` the request wants as binary data."""
    everything = bool((request.parameters or {}).get("binary_data_output", False))
    asked = {o.name: (o.parameters or {}).get("binary_data") for o in request.outputs or ()}
    return {n for n in names if (asked[n] if asked.get(n) is not None else everything)}


def encode(output: InferOutput) -> bytes:
    if output.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(b)) + b for b in (str(x).encode() for x in output.data))
    return np.asarray(output.data, dtype=NUMERIC[output.datatype]).tobytes()


def split_outputs(outputs: Sequence[InferOutput], binary: set[str]) -> tuple[list[dict[str, Any]], bytes]:
    """The outputs as the JSON header shows them, and the binary data that follows it."""
    shown: list[dict[str, Any]] = []
    data = bytearray()
    for output in outputs:
        if output.name in binary:
            raw = encode(output)
            data += raw
            shown.append(output.model_dump(exclude={"data"}) | {"parameters": {"binary_data_size": len(raw)}})
        else:
            shown.append(output.model_dump(exclude_none=True))
    return shown, bytes(data)
