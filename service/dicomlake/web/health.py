"""Health endpoints: live (process only), ready (database and storage usable), check (detailed)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomlake.health import HealthStatus, overall
from dicomlake.web.deps import deps


async def live(request: Request) -> Response:
    return JSONResponse({"status": HealthStatus.HEALTHY.value})


async def ready(request: Request) -> Response:
    components = await deps(request).health.check()
    status = overall(components)
    code = 200 if status is HealthStatus.HEALTHY else 503
    return JSONResponse({"status": status.value}, status_code=code)


async def check(request: Request) -> Response:
    components = await deps(request).health.check()
    status = overall(components)
    code = 200 if status is HealthStatus.HEALTHY else 503
    details = [c.as_json() for c in components + await deps(request).health.background()]
    return JSONResponse({"overallStatus": status.value, "details": details}, status_code=code)
