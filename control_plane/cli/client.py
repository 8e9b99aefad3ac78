"""A small client for the admin API (used by the CLI; handy in scripts and tests)."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:18001"


class AdminError(Exception):
    """The server refused (``status`` set) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or []


def default_url() -> str:
    return os.environ.get("SWITCHYARD_URL") or os.environ.get("SWITCHYARD_ADMIN_URL") or DEFAULT_URL


class AdminClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        token = token if token is not None else os.environ.get("SWITCHYARD_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not swallow a loopback admin API.
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach the admin API at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = str(body.get("message") or body)
                errors = [str(e) for e in body.get("errors") or []]
            except (ValueError, AttributeError):
                message, errors = response.text or response.reason_phrase, []
            raise AdminError(message, response.status_code, errors)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- reading ---------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        result: dict[str, Any] = self.json("GET", "/v1/models")
        return result

    def model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("GET", f"/v1/models/{name}")
        return result

    def envoys(self) -> dict[str, Any]:
        result: dict[str, Any] = self.json("GET", "/v1/envoys")
        return result

    def audit(self, model: str | None = None, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if model:
            params["model"] = model
        result: dict[str, Any] = self.json("GET", "/v1/audit", params=params)
        return result

    def history(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("GET", f"/v1/models/{name}/history")
        return result

    # -- changing: each sends If-Match with the ETag it just read, so a change made by
    # someone else in between is refused (412) instead of silently overwritten.

    def _change(self, method: str, name: str, verb: str, etag: str | None, **kwargs: Any) -> dict[str, Any]:
        if etag is None:
            etag = self.model(name)["etag"]
        result: dict[str, Any] = self.json(method, f"/v1/models/{name}/{verb}", headers={"If-Match": etag}, **kwargs)
        return result

    def shift(self, name: str, weights: dict[str, int], etag: str | None = None) -> dict[str, Any]:
        return self._change("PUT", name, "traffic", etag, json={"weights": weights})

    def shadow(self, name: str, version: str, percent: float, etag: str | None = None) -> dict[str, Any]:
        return self._change("PUT", name, "shadow", etag, json={"version": version, "percent": percent})

    def shadow_off(self, name: str, version: str | None = None, etag: str | None = None) -> dict[str, Any]:
        params = {"version": version} if version else {}
        return self._change("DELETE", name, "shadow", etag, params=params)

    def promote(self, name: str, version: str, etag: str | None = None) -> dict[str, Any]:
        return self._change("POST", name, "promote", etag, json={"version": version})

    def rollback(self, name: str, etag: str | None = None) -> dict[str, Any]:
        return self._change("POST", name, "rollback", etag)
