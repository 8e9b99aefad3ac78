"""Request and response bodies: the v1 API of the design and the Open Inference
Protocol (KServe v2) subset the service speaks.

Request models accept unknown fields on purpose: a router may route on extra
body fields (Envoy's json_to_metadata) that the model does not care about.
Strict types: ``{"text": 5}`` is a 422, not the string "5".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class PredictRequest(BaseModel):
    # Unknown fields are kept (not ignored), to warn about misspelt pin fields.
    model_config = ConfigDict(extra="allow")

    text: StrictStr = Field(examples=["This product is terrible"])
    model_version: StrictStr | None = Field(default=None, examples=["sentiment-v3"])


class PredictResponse(BaseModel):
    label: str
    confidence: float
    model_version: str
    latency_ms: float


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    texts: list[StrictStr]
    model_version: StrictStr | None = None


class BatchItem(BaseModel):
    label: str
    confidence: float


class BatchPredictResponse(BaseModel):
    predictions: list[BatchItem]
    model_version: str
    latency_ms: float


class ErrorResponse(BaseModel):
    # KServe v2 errors are {"error": "<message>"}; `code` is a stable machine name.
    error: str
    code: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferInput(BaseModel):
    name: StrictStr
    shape: list[int]
    datatype: StrictStr
    # Absent when the tensor travels as binary data after the JSON (parameters.binary_data_size).
    data: list[Any] = Field(default_factory=list)
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: StrictStr
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: StrictStr | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["BYTES", "FP32"]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class FaultRequest(BaseModel):
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    # Fail every prediction whose text contains this (a "poison" input for drills).
    match: StrictStr | None = Field(default=None, min_length=1)


class FaultResponse(BaseModel):
    error_rate: float
    latency_ms: float
    match: str | None = None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema with its ``$defs`` written in place, for an OpenAPI ``requestBody``
    (where ``#/$defs/...`` would point into the OpenAPI document, not the schema)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
