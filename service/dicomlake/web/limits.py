"""Request limits, before anything else reads the request: query string length (414), header size
(431), body size (413, from ``Content-Length`` up front and counted while reading) and a body deadline
(408).

uvicorn has no timeout for receiving a request body, so a client could hold a connection and a spool
open for ever by sending a byte now and then. The body must arrive at an average rate of at least
``body_min_bytes_per_second`` after ``body_grace_seconds``: by ``grace + received / rate`` seconds after
the request started, else the next ``receive()`` fails and the request is answered 408. The deadline
stops once the body is complete (Starlette keeps calling ``receive()`` to notice disconnects while a
response streams).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomlake.config import LimitSettings
from dicomlake.errors import (
    DicomWebError,
    HeadersTooLargeError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UriTooLongError,
)
from dicomlake.web.errors import error_response
from dicomlake.web.multipart import PartLimits


def part_limits(limits: LimitSettings) -> PartLimits:
    """The multipart reader's limits from the settings."""
    return PartLimits(max_parts=limits.parts, max_part_bytes=limits.part_bytes, max_request_bytes=limits.body_bytes)


def check_head(scope: Scope, limits: LimitSettings) -> DicomWebError | None:
    """The checks that need only the request line and headers."""
    if len(scope.get("query_string", b"")) > limits.query_bytes:
        return UriTooLongError(f"The query string is longer than {limits.query_bytes} bytes.")
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    if sum(len(name) + len(value) for name, value in headers) > limits.header_bytes:
        return HeadersTooLargeError(f"The request headers are larger than {limits.header_bytes} bytes.")
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None  # the server refuses an invalid Content-Length itself
            if length > limits.body_bytes:
                return PayloadTooLargeError(f"The request body is larger than {limits.body_bytes} bytes.")
    return None


class LimitedReceive:
    """Wraps ``receive``: counts body bytes (413) and enforces the body deadline (408)."""

    def __init__(self, receive: Receive, limits: LimitSettings) -> None:
        self._receive = receive
        self._limits = limits
        self._started = time.monotonic()
        self._received = 0
        self._body_done = False

    def _deadline(self) -> float:
        return self._started + self._limits.body_grace_seconds + self._received / self._limits.body_min_bytes_per_second

    async def __call__(self) -> Message:
        if self._body_done:
            return await self._receive()
        remaining = self._deadline() - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        try:
            async with asyncio.timeout(remaining):
                message = await self._receive()
        except TimeoutError:
            raise self._timeout() from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limits.body_bytes:
                self._body_done = True
                raise PayloadTooLargeError(f"The request body is larger than {self._limits.body_bytes} bytes.")
            if not message.get("more_body", False):
                self._body_done = True
        else:
            self._body_done = True
        return message

    def _timeout(self) -> RequestTimeoutError:
        self._body_done = True
        return RequestTimeoutError(
            f"The request body arrived too slowly (less than {self._limits.body_min_bytes_per_second} bytes per "
            f"second after {self._limits.body_grace_seconds:g} s)."
        )


class LimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        security: Any = scope.get("state", {}).get("security")
        if security is None:
            await self.app(scope, receive, send)  # the security middleware answers 503 before this
            return
        limits: LimitSettings = security.settings.limits
        problem = check_head(scope, limits)
        if problem is not None:
            response = error_response(problem)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, LimitedReceive(receive, limits), send)
