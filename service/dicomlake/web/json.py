"""DICOM JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

DICOM_JSON = "application/dicom+json"


def dicom_json_response(body: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=DICOM_JSON, headers=headers)
