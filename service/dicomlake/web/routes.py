"""Every route of the service, in one table."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dicomlake.web import health


def build_routes() -> list[BaseRoute]:
    return [
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route("/health/check", health.check, methods=["GET"]),
    ]
