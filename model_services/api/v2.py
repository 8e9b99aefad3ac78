"""The Open Inference Protocol's model calls, whatever carries them: the checks,
metadata and outputs that the REST routes (``app.py``) and the gRPC service
(``grpc_service.py``) share, so both answer every request the same way."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from model_services.api.checks import check_texts, check_version
from model_services.api.errors import ApiError
from model_services.api.schemas import InferOutput, InferRequest, ModelMetadata, TensorMetadata
from model_services.serving.service import ModelService, Prediction

OUTPUTS = ("label", "confidence", "probabilities")


def check_model(service: ModelService, name: str, version: str | None) -> None:
    if name != service.name:
        raise ApiError(
            404,
            "model_not_found",
            f"unknown model {name!r}; this service serves {service.name!r}",
        )
    if version is not None:
        check_version(service, version)


def metadata(service: ModelService) -> ModelMetadata:
    n = -1
    return ModelMetadata(
        name=service.name,
        versions=[service.version],
        platform="pytorch",
        inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[n])],
        outputs=[
            TensorMetadata(name="label", datatype="BYTES", shape=[n]),
            TensorMetadata(name="confidence", datatype="FP32", shape=[n]),
            TensorMetadata(name="probabilities", datatype="FP32", shape=[n, len(service.labels)]),
        ],
        parameters={
            "labels": list(service.labels),
            "architecture": service.architecture,
            "max_batch_size": service.config.max_batch_size,
        },
    )


def texts_of(service: ModelService, body: InferRequest) -> list[str]:
    """The texts to classify: one BYTES input whose elements are strings, within the limits."""
    if len(body.inputs) != 1:
        raise ApiError(422, "invalid_input", "expected exactly one input: a BYTES tensor of texts")
    tensor = body.inputs[0]
    if tensor.datatype != "BYTES":
        raise ApiError(422, "invalid_input", f"input {tensor.name!r} must be BYTES, not {tensor.datatype}")
    # The protocol allows nested (row-major) data; texts are one string per element.
    flat: list[Any] = []
    for item in tensor.data:
        flat.extend(item if isinstance(item, list) else [item])
    if not all(isinstance(x, str) for x in flat):
        raise ApiError(422, "invalid_input", f"input {tensor.name!r} data must be strings")
    if any(d < 0 for d in tensor.shape) or math.prod(tensor.shape) != len(flat):
        raise ApiError(
            422,
            "invalid_input",
            f"input {tensor.name!r} has shape {tensor.shape} but {len(flat)} elements",
        )
    check_texts(service, flat, field=f"inputs[0] ({tensor.name})")
    return flat


def requested_outputs(body: InferRequest) -> list[str]:
    """The outputs the request names, in its order; all of them when it names none."""
    wanted = [o.name for o in body.outputs] if body.outputs else list(OUTPUTS)
    unknown = sorted(set(wanted) - set(OUTPUTS))
    if unknown:
        raise ApiError(422, "invalid_output", f"unknown outputs {unknown}; choose from {OUTPUTS}")
    return wanted


def outputs(service: ModelService, preds: Sequence[Prediction], names: Sequence[str]) -> list[InferOutput]:
    n, k = len(preds), len(service.labels)
    every = {
        "label": InferOutput(name="label", shape=[n], datatype="BYTES", data=[p.label for p in preds]),
        "confidence": InferOutput(name="confidence", shape=[n], datatype="FP32", data=[p.confidence for p in preds]),
        "probabilities": InferOutput(
            name="probabilities", shape=[n, k], datatype="FP32", data=[x for p in preds for x in p.probabilities]
        ),
    }
    return [every[name] for name in names]
