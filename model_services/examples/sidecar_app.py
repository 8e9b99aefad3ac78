"""An application whose model service runs beside it as a sidecar.

The model service shares this container's network namespace, so the app reaches
it on localhost: no service discovery, no proxy, nothing exposed beyond the pod.
Standard library only, so it runs on a bare ``python`` image::

    GET /review?text=great+product   ->  {"review": "...", "sentiment": {...model answer...}}

    python model_services/examples/sidecar_app.py [--port 8080] [--model-url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def classify(model_url: str, text: str, timeout: float = 5.0) -> tuple[int, dict[str, object]]:
    """The model's answer to one text, or the error it (or its absence) gave."""
    request = urllib.request.Request(
        f"{model_url}/v1/predict",
        data=json.dumps({"text": text}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, object] = json.load(response)
            return response.status, body
    except urllib.error.HTTPError as exc:  # the model answered with an error
        return exc.code, {"error": exc.read().decode(errors="replace")}
    except OSError as exc:  # not listening yet (still loading) or gone
        return 503, {"error": f"model service unavailable: {exc}"}


def make_handler(model_url: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/review":
                self._send(404, {"error": "try GET /review?text=..."})
                return
            text = parse_qs(url.query).get("text", [""])[0]
            if not text:
                self._send(400, {"error": "missing ?text="})
                return
            status, answer = classify(model_url, text)
            self._send(status, {"review": text, "sentiment": answer})

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model-url", default="http://127.0.0.1:8000", help="the sidecar, on localhost")
    args = parser.parse_args(argv)
    # As PID 1 in a container, SIGTERM is ignored unless handled: exit at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.model_url.rstrip("/")))
    print(f"app on http://{args.host}:{args.port}/review?text=..., model at {args.model_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
