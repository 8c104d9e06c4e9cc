"""gzip for JSON answers (metadata, search, change feed), which viewers such as OHIF fetch in bulk.

DICOM files, frames and images are already compressed or large binary: they pass through untouched
(compressing them costs CPU for nothing and would defeat Content-Length and Range). A JSON body is
compressed when the client accepts gzip and the body is at least ``MINIMUM_SIZE`` bytes.
"""

from __future__ import annotations

import zlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_SIZE = 1024
_JSON_TYPES = ("application/dicom+json", "application/json")


class JsonGzipMiddleware:
    def __init__(self, app: ASGIApp, *, level: int = 6) -> None:
        self.app = app
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "gzip" not in Headers(scope=scope).get("accept-encoding", "").lower():
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        compressor: zlib._Compress | None = None
        pending = bytearray()
        decided = False

        async def send_compressed(message: Message) -> None:
            nonlocal start, compressor, decided
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                media = headers.get("content-type", "").split(";")[0].strip().lower()
                if media in _JSON_TYPES and "content-encoding" not in headers and message["status"] not in (204, 304):
                    start = message  # hold it until we know the body is worth compressing
                else:
                    decided = True
                    await send(message)
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if not decided:
                pending.extend(body)
                if more and len(pending) < MINIMUM_SIZE:
                    return
                decided = True
                if not more and len(pending) < MINIMUM_SIZE:
                    await send(start)
                    await send({"type": "http.response.body", "body": bytes(pending), "more_body": False})
                    return
                headers = MutableHeaders(raw=list(start["headers"]))
                del headers["content-length"]
                headers["content-encoding"] = "gzip"
                headers.add_vary_header("Accept-Encoding")
                await send({**start, "headers": headers.raw})
                compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)
                body = bytes(pending)
            assert compressor is not None
            chunk = compressor.compress(body)
            if not more:
                chunk += compressor.flush()
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

        await self.app(scope, receive, send_compressed)
