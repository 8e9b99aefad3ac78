"""One answer as a model service reports it (the collector endpoint's wire format)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_INPUT_CHARS = 1000  # a disagreement sample shows the input's start, not a whole document


# NaN and infinities would make every report that includes them unrenderable as JSON.
Finite = Annotated[float, Field(allow_inf_nan=False)]


class AnswerRecord(BaseModel):
    # Newer services may send more fields; strict: `true` is not 1, "1" is not a number.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=200)]
    model: Annotated[str, Field(max_length=253)] = ""
    version: Annotated[str, Field(min_length=1, max_length=253)]
    shadow: bool
    label: str | None = None
    confidence: Finite | None = None
    latency_ms: Finite = 0.0
    error: Annotated[str, Field(max_length=200)] | None = None
    input: Annotated[str, Field(max_length=MAX_INPUT_CHARS)] | None = None


class ReportBatch(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    records: Annotated[list[AnswerRecord], Field(max_length=10_000)]
    dropped: Annotated[int, Field(ge=0)] = 0  # records the service could not queue since its last batch
    version: str | None = None  # the reporting service's version (for ``dropped``)
