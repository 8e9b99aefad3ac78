"""Webhook messages, signed per Standard Webhooks (standardwebhooks.com).

Headers: ``webhook-id`` (the job id, stable across retries so receivers can
de-duplicate), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
The body is the same on every attempt; the timestamp and signature are fresh,
because receivers refuse old timestamps (replay protection). Who sends them,
when, and how often: delivery.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def secret_bytes(secret: str) -> bytes:
    # Standard Webhooks secrets are "whsec_" + base64; accept raw text as well.
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check (used by tests; a reference for users)."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    offered = headers["webhook-signature"].split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)


def message(event: str, event_at: float, data: dict[str, Any]) -> bytes:
    """``{"type", "timestamp" (of the event), "data"}``."""
    return json.dumps({"type": event, "timestamp": int(event_at), "data": data}).encode()


def headers(secret: str | None, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    out = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret:
        out["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    return out
