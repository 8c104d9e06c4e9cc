"""Request context: a request id for logs and responses, and a PHI-free access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomlake.logs import request_id_var

access_logger = logging.getLogger("dicomlake.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def route_template(router: Router, scope: Scope) -> str:
    """The matched route's template (``/v2/studies/{study}``): paths carry UIDs, templates do not."""
    for route in router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "?"))
    return "(unmatched)"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route_template(self.router, scope),
                    "status": status,
                    "durationMs": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id_var.reset(token)
