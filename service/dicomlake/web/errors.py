"""The one mapping from the exception tree to HTTP responses."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomlake.errors import DependencyUnavailableError, DicomWebError

logger = logging.getLogger(__name__)


def error_response(error: DicomWebError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, DependencyUnavailableError):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status_code, headers=headers)


async def handle_dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomWebError)
    if exc.status_code >= 500 or exc.status_code == 424:
        logger.warning("dependency error", extra={"code": exc.code, "status": exc.status_code})
    return error_response(exc)


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error", exc_info=exc)
    return JSONResponse(
        {"code": "InternalError", "message": "The server could not complete the request."}, status_code=500
    )
