"""Run an ASGI app's lifespan in-process and talk to it with httpx (fast API tests).

httpx's ASGITransport buffers whole responses and skips lifespan; this runs the lifespan protocol
itself and hands each request the state the lifespan produced. Streaming and memory tests use a real
uvicorn server instead (tests/helpers/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@contextlib.asynccontextmanager
async def running_app(app: ASGIApp, *, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"lifespan startup failed: {started.get('message')}")

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    try:
        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task
