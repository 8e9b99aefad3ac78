"""The sentiment model as a LitServe ``LitAPI`` with batching on (runs in the peers' virtualenv).

    python -m bench.peers.litserve_app --port 8000 --model-dir STORE/sentiment/sentiment-v3

``POST /predict`` with ``{"text": "..."}`` answers ``{"label", "confidence", "probabilities"}``,
the fields of ``model_services``' ``/v1/predict``. The model comes from the repo's own loader,
so LitServe serves exactly the handler ``model_services serve`` does.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation at
# run time to declare the request body, and a string annotation would make it a query field.

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import litserve as ls  # type: ignore[import-not-found]
import numpy as np
import torch

from bench.peers import THREADS_ENV
from model_services.serving.handler import Handler, Probabilities, load_model


class SentimentAPI(ls.LitAPI):  # type: ignore[misc]  # LitAPI is untyped here
    def __init__(self, model_dir: Path, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self._model_dir = model_dir

    def setup(self, device: str) -> None:
        # In LitServe's inference worker process, the one that runs the model.
        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
        self._handler: Handler = load_model(self._model_dir, torch.device("cpu")).handler
        self._labels = list(self._handler.labels)

    def decode_request(self, request: dict[str, Any]) -> str:
        text: str = request["text"]
        return text

    def batch(self, inputs: Sequence[str]) -> list[str]:
        return list(inputs)

    def predict(self, x: list[str]) -> Probabilities:
        return self._handler.predict(x)

    def unbatch(self, output: Probabilities) -> list[Probabilities]:
        return list(output)

    def encode_response(self, output: Probabilities) -> dict[str, Any]:
        best = int(np.argmax(output))
        return {"label": self._labels[best], "confidence": float(output[best]), "probabilities": output.tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    args = p.parse_args()
    api = SentimentAPI(args.model_dir, args.max_batch_size, args.batch_timeout)
    # One inference worker process and one API server process: the shape of model_services serve.
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
