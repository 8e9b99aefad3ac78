"""No background task dies silently, and a reload can only accept or reject."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from control_plane.engine.controller import Controller
from control_plane.engine.tasks import BackgroundTasks
from control_plane.engine.watcher import watch_policies
from control_plane.ir import RoutingIntent
from control_plane.plane import ServeOptions, build
from control_plane.sources.files import FileSource
from control_plane.xds.cache import SnapshotCache
from tests.unit.test_policy_validation import BASE


async def test_a_task_that_dies_or_returns_makes_the_process_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()

    async def boom() -> None:
        raise RuntimeError("disk on fire")

    async def quits() -> None:
        return None

    async def forever() -> None:
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR):
        tasks.start("boom", boom())
        tasks.start("quits", quits())
        tasks.start("forever", forever())
        for _ in range(10):
            await asyncio.sleep(0)
    assert not tasks.healthy
    assert [(f.task, f.error) for f in tasks.failures] == [
        ("boom", "RuntimeError: disk on fire"),
        ("quits", "stopped unexpectedly (returned)"),
    ]
    assert "background task 'boom' died" in caplog.text and "disk on fire" in caplog.text
    await tasks.stop()  # cancelling at shutdown is not a failure
    assert len(tasks.failures) == 2


async def test_healthz_says_which_task_died(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BASE)
    plane = build(ServeOptions(policies=[tmp_path], state_dir=tmp_path / "s"))
    plane.controller.reload()
    tasks = plane.parts.tasks
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plane.app), base_url="http://admin") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}

        async def watcher() -> None:
            raise OSError("inotify watch limit reached")

        tasks.start("policy-watcher", watcher())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        answer = await client.get("/healthz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unhealthy"
    assert body["failed_tasks"][0]["task"] == "policy-watcher"
    assert body["failed_tasks"][0]["error"] == "OSError: inotify watch limit reached"


async def test_the_watcher_survives_a_failing_reload_and_a_vanished_directory(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    calls: list[int] = []
    seen = asyncio.Event()

    async def on_change() -> None:
        calls.append(len(calls))
        seen.set()
        if len(calls) == 1:
            raise RuntimeError("a bug in the reload")

    async def edit_and_wait(name: str) -> None:
        seen.clear()
        for _ in range(100):  # edits before the watch is set up are not seen: repeat until one is
            (policies / name).write_text(f"# {len(calls)}\n")
            try:
                await asyncio.wait_for(seen.wait(), 0.3)
                return
            except TimeoutError:
                continue
        raise AssertionError("the watcher never called back")

    task = asyncio.create_task(watch_policies([policies], on_change))
    try:
        await edit_and_wait("a.yaml")  # raises inside on_change
        await edit_and_wait("a.yaml")  # still watching
        for path in policies.iterdir():
            path.unlink()
        policies.rmdir()
        await asyncio.sleep(0.3)
        seen.clear()
        policies.mkdir()  # back: the watcher reloads once (files may have changed meanwhile)...
        await asyncio.wait_for(seen.wait(), 10)
        await edit_and_wait("b.yaml")  # ...and watches the new directory
        assert not task.done()
    finally:
        task.cancel()
    assert len(calls) >= 4


def test_a_translation_failure_is_a_rejection_naming_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import control_plane.engine.controller as controller_module

    (tmp_path / "p.yaml").write_text(BASE)
    controller = Controller(FileSource([tmp_path]), SnapshotCache())
    original = controller_module.translate

    def broken(intent: RoutingIntent, unready: frozenset[str] = frozenset()) -> object:
        if any(m.name == "sentiment" for m in intent.models):
            raise ValueError("Value out of range: 4294967296")
        return original(intent, unready)

    monkeypatch.setattr(controller_module, "translate", broken)
    monkeypatch.setattr(controller.translator, "translate", broken)
    outcome = controller.reload()
    assert not outcome.accepted
    assert outcome.errors == [
        f"{tmp_path / 'p.yaml'}:1: model 'sentiment' cannot be translated into Envoy configuration:"
        " ValueError: Value out of range: 4294967296"
    ]
    assert controller.intent is None and controller.last_rejected is outcome


def test_an_unexpected_error_anywhere_is_still_only_a_rejection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import control_plane.engine.controller as controller_module

    (tmp_path / "p.yaml").write_text(BASE)
    controller = Controller(FileSource([tmp_path]), SnapshotCache())
    assert controller.reload().accepted
    served = controller.intent

    def explode(*_: object, **__: object) -> object:
        raise KeyError("surprise")

    monkeypatch.setattr(controller_module, "load_texts", explode)
    outcome = controller.reload()
    assert not outcome.accepted and "internal error while reading: KeyError: 'surprise'" in outcome.errors[0]
    monkeypatch.undo()
    monkeypatch.setattr(controller_module, "removal_errors", explode)
    outcome = controller.reload()
    assert not outcome.accepted and "internal error while publishing: KeyError" in outcome.errors[0]
    assert controller.intent is served


def test_a_nack_rolls_the_controller_back_to_what_envoy_runs(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BASE)
    cache = SnapshotCache()
    controller = Controller(FileSource([tmp_path]), cache)
    reverted: list[RoutingIntent | None] = []
    controller.on_reverted = reverted.append
    assert controller.reload().accepted
    good, good_intent = cache.current, controller.intent
    (tmp_path / "p.yaml").write_text(BASE.replace("v3: 90, v4: 10", "v3: 50, v4: 50"))
    assert controller.reload().accepted
    bad = cache.current
    assert bad is not None and good is not None and bad.version != good.version
    cache.reject(bad.version, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "edge-1", "bad route")
    assert cache.current is good and controller.intent is good_intent and reverted == [good_intent]
    assert controller.last_rejected is not None
    (error,) = controller.last_rejected.errors
    assert error.startswith(
        f"Envoy 'edge-1' rejected snapshot {bad.version} (RouteConfiguration, snapshot {bad.version}): bad route"
    )
    # Reading the same files again is rejected at once; nothing is re-sent.
    outcome = controller.reload()
    assert not outcome.accepted and "rejected this configuration" in outcome.errors[0]
    assert cache.current is good
