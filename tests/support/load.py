"""Steady client traffic in a background thread, every answer recorded in order."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
import numpy as np
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # HTTP status; for gRPC 200 when the call succeeded, else 500
    version: str | None


class Load:
    """One client sending requests back to back until ``stop()`` (bounded by ``limit``)."""

    def __init__(
        self, url: str, *, limit: int = 200_000, text: str = "This product is terrible", grpc: bool = False
    ) -> None:
        self.url = url
        self.grpc = grpc  # ModelInfer calls with the Triton gRPC client instead of POST /v1/predict
        self.limit = limit
        self.text = text
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def mark(self) -> int:
        """The index of the next answer: slice ``answers`` between two marks."""
        return len(self.answers)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        if self.grpc:
            self._run_grpc()
            return
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as client:
            while not self._stop.is_set() and len(self.answers) < self.limit:
                try:
                    r = client.post("/v1/predict", json={"text": self.text})
                    self.answers.append(Answer(r.status_code, r.headers.get("x-model-version")))
                except httpx.HTTPError:
                    self.answers.append(Answer(0, None))

    def _run_grpc(self) -> None:
        client = triton_grpc.InferenceServerClient(self.url.removeprefix("http://"))
        text = triton_grpc.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([self.text.encode()], dtype=np.object_))
        try:
            while not self._stop.is_set() and len(self.answers) < self.limit:
                try:
                    answer = client.infer("sentiment", [text], client_timeout=10).get_response()
                    self.answers.append(Answer(200, answer.model_version))
                except InferenceServerException:
                    self.answers.append(Answer(500, None))
        finally:
            client.close()
