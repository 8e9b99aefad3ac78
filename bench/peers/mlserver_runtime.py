"""The sentiment model as an MLServer custom runtime (runs in the peers' virtualenv).

Loaded by ``mlserver start`` from the settings ``bench/protocols.py`` writes; the model
comes from the repo's own loader, so MLServer serves exactly the handler that
``model_services serve`` does. With adaptive batching on, MLServer merges queued
requests into one ``InferenceRequest`` along the first dimension and splits the
answer back, so ``predict`` sees a batch of texts and returns one row per text.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec, StringCodec  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found]

from bench.peers import THREADS_ENV
from model_services.serving.handler import Handler, load_model


class SentimentRuntime(MLModel):  # type: ignore[misc]  # MLModel is untyped here
    async def load(self) -> bool:
        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
        self._handler: Handler = load_model(Path(self.settings.parameters.uri), torch.device("cpu")).handler
        self._labels = np.array(list(self._handler.labels), dtype=np.object_)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = [t.decode() if isinstance(t, bytes) else t for t in StringCodec.decode_input(payload.inputs[0])]
        # The handler is synchronous, as in model_services' worker; MLServer runs it in its worker process.
        probs = self._handler.predict(texts)
        best = probs.argmax(axis=1)
        # The same three outputs as model_services' /v2 infer.
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                StringCodec.encode_output("label", [str(x) for x in self._labels[best]]),
                NumpyCodec.encode_output("confidence", probs.max(axis=1).astype(np.float32)),
                NumpyCodec.encode_output("probabilities", probs.astype(np.float32)),
            ],
        )
