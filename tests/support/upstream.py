"""A real HTTP upstream that says which version it is, for routing tests.

It speaks HTTP/1.1 on 127.0.0.1 and counts what it receives (including
mirrored requests, which Envoy sends with a ``-shadow`` host suffix), so tests
can check where traffic went without trusting Envoy's own statistics.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # Envoy closing idle keep-alive connections is not an error worth a traceback


Labeler = Callable[[str], tuple[str, float]]  # input text -> (label, confidence)


class VersionUpstream:
    def __init__(
        self,
        version: str,
        port: int = 0,
        *,
        ready: bool = True,
        labeler: Labeler | None = None,
        model: str = "sentiment",
    ) -> None:
        self.version = version
        # With a labeler it answers like a model service (label, confidence) and keeps a
        # shadow-collector record of every answer; flush_reports() posts them.
        self.labeler = labeler
        self.model = model
        self.reports: list[dict[str, object]] = []
        self.ready = ready
        self.status = 200  # what /v1/predict answers; tests flip it to simulate a failing version
        self.requests: Counter[str] = Counter()  # by kind: "live" or "shadow"
        self.request_ids: list[str] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without TCP_NODELAY each
            # response waits ~40 ms for the peer's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("x-model-version", upstream.version)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.startswith("/v2/health/ready"):
                    self._reply(200 if upstream.ready else 503, {"ready": upstream.ready})
                else:
                    self._serve()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self._serve(self.rfile.read(length))

            def _serve(self, body: bytes = b"") -> None:
                # Envoy marks mirrored requests by suffixing the host: "10.0.0.1-shadow:8080".
                host = self.headers.get("host", "").rsplit(":", 1)[0]
                kind = "shadow" if host.endswith("-shadow") else "live"
                request_id = self.headers.get("x-request-id", "")
                answer: dict[str, object] = {"model_version": upstream.version, "path": self.path}
                if upstream.labeler is not None:
                    text = str(json.loads(body or b"{}").get("text", ""))
                    label, confidence = upstream.labeler(text)
                    answer.update(label=label, confidence=confidence)
                with upstream._lock:
                    upstream.requests[kind] += 1
                    upstream.request_ids.append(request_id)
                    if upstream.labeler is not None:
                        failed = upstream.status >= 500
                        upstream.reports.append(
                            {
                                "request_id": request_id,
                                "model": upstream.model,
                                "version": upstream.version,
                                "shadow": kind == "shadow",
                                "label": None if failed else answer["label"],
                                "confidence": None if failed else answer["confidence"],
                                "latency_ms": 0.1,
                                "error": "injected" if failed else None,
                                "input": text if kind == "shadow" else None,
                            }
                        )
                self._reply(upstream.status, answer)

        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"upstream-{version}", daemon=True)
        self._thread.start()

    def count(self, kind: str = "live") -> int:
        with self._lock:
            return self.requests[kind]

    def flush_reports(self, url: str) -> int:
        """Post the answers recorded so far to a shadow collector (``.../v1/shadow/reports``)."""
        with self._lock:
            records, self.reports = self.reports, []
        if records:
            httpx.post(url, json={"records": records, "version": self.version}, timeout=10).raise_for_status()
        return len(records)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_ids.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
