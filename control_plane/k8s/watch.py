"""List, then watch, one kind of object, for as long as the process runs.

The informer pattern client-go uses, reduced to what the controller needs: a
full list gives the state and a resourceVersion; a watch from that version
gives every later change (with BOOKMARK events, so the version advances while
nothing changes and a reconnect does not start from a compacted one). When the
server answers ``410 Gone`` (the version is older than what etcd keeps) or the
connection breaks, the loop lists again and hands over the whole new state:
deletions missed in between are noticed, and a consumer that compares content
pushes nothing if nothing changed.

The loop never ends by itself: every failure is logged and retried with
backoff, so a restarted API server or a network blip is survived.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lightkube import AsyncClient
from lightkube.core import decoders
from lightkube.core.exceptions import ApiError

log = logging.getLogger(__name__)

RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # backoff after consecutive failures, then 5 s
WATCH_TIMEOUT_S = 300  # the server ends each watch after this; we resume from the last version


class _Meta(Protocol):
    name: str | None
    resourceVersion: str | None


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # ADDED, MODIFIED, DELETED
    name: str
    obj: Any  # a lightkube object (a model for built-in kinds, a dict-like one for custom resources)


class Consumer(Protocol):
    async def replace_all(self, objects: dict[str, Any]) -> None:
        """The whole state, after a (re)list: what is not in ``objects`` is gone."""
        ...

    async def apply(self, event: Event) -> None:
        """One change seen by the watch."""
        ...


def _name(obj: Any) -> str:
    meta: _Meta = obj.metadata
    return meta.name or ""


class Informer:
    """Keeps ``consumer`` in step with every object of ``resource`` in ``namespace``."""

    def __init__(
        self,
        client: AsyncClient,
        resource: Any,  # a lightkube resource class
        namespace: str,
        consumer: Consumer,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.consumer = consumer
        self.watch_timeout_s = watch_timeout_s
        self._sleep = sleep
        self.resource_version: str | None = None  # the last version seen (list, event or bookmark)
        self.lists = 0  # full lists done: the first, and one after each 410 or broken watch
        self.synced = asyncio.Event()  # set once the first list has been handed over

    @property
    def what(self) -> str:
        return f"{getattr(self.resource, '__name__', 'objects')} in namespace {self.namespace!r}"

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._list()
                failures = 0
                await self._watch()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status.code == 410:  # expired: list again at once, nothing is wrong
                    log.info("the watch of %s expired (410 Gone); listing again", self.what)
                    continue
                failures += 1
                log.warning("watching %s failed: %s %s; retrying", self.what, exc.status.code, exc.status.message)
            except Exception as exc:
                failures += 1
                log.warning("watching %s failed: %s; retrying", self.what, f"{type(exc).__name__}: {exc}")
            await self._sleep(RETRY_S[min(failures, len(RETRY_S)) - 1] if failures else 0)

    async def _list(self) -> None:
        listed = self.client.list(self.resource, namespace=self.namespace)
        objects = {_name(obj): obj async for obj in listed}
        self.resource_version = listed.resourceVersion if objects or _has_version(listed) else None
        self.lists += 1
        await self.consumer.replace_all(objects)
        self.synced.set()

    async def _watch(self) -> None:
        # lightkube's watch() neither asks for bookmarks nor survives one of a kind
        # with required fields (a BOOKMARK object carries only its metadata, and an
        # EndpointSlice without addressType fails to decode). Its request builder and
        # decoders are used; the events are read here.
        inner = self.client._client
        request = inner.prepare_request(
            "list",
            res=self.resource,
            namespace=self.namespace,
            watch=True,
            params={
                "timeoutSeconds": self.watch_timeout_s,
                "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true",
            },
        )
        http = inner._client.build_request(
            request.method, request.url, params=request.params, timeout=inner._watch_timeout
        )
        response = await inner._client.send(http, stream=True)
        try:
            if response.is_error:
                await response.aread()
                inner.raise_for_status(response)  # type: ignore[no-untyped-call]  # an ApiError with its Status
            async for line in response.aiter_lines():
                if line.strip():
                    await self._event(line)
        finally:
            await response.aclose()

    async def _event(self, line: str) -> None:
        event = decoders.decode_watch_event(line.encode())
        if event.type == "ERROR":
            raise ApiError(status=decoders.decode_status(event.object))
        if event.type == "BOOKMARK":
            version = (json.loads(bytes(event.object)).get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = version
            return
        obj = decoders.decode_object(event.object, self.resource)
        version = obj.metadata.resourceVersion if obj.metadata else None
        if version:
            self.resource_version = version
        if event.type in ("ADDED", "MODIFIED", "DELETED"):
            await self.consumer.apply(Event(event.type, _name(obj), obj))


def _has_version(listed: Any) -> bool:
    try:
        return bool(listed.resourceVersion)
    except Exception:  # lightkube raises NotReadyError for an empty list without a version
        return False
