"""``GET /v2/operations/{id}``: a long-running operation (Azure DICOM service v2 shape): 202 while
``notStarted``/``running``, 200 once ``completed``, ``failed`` or ``canceled``."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.errors import NotFoundError
from dicomlake.index.operations import Operation, OperationStore
from dicomlake.web.deps import deps
from dicomlake.web.extended_tags import json_response, root, timestamp


def operation_json(op: Operation, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": str(op.id),
        "type": op.type,
        "createdTime": timestamp(op.created_at),
        "lastUpdatedTime": timestamp(op.updated_at),
        "status": op.status,
        "percentComplete": op.percent_complete,
    }
    if op.resource_locations:
        out["resourceLocations"] = [f"{base}/{loc}" for loc in op.resource_locations]
    if op.results is not None:
        out["results"] = op.results
    if op.error is not None:
        out["errors"] = [op.error]
    return out


async def get_operation(request: Request) -> Response:
    try:
        op_id = uuid.UUID(request.path_params["id"])
    except ValueError as e:
        raise NotFoundError("The operation was not found.", code="OperationNotFound") from e
    op = await OperationStore(deps(request).pool).get(op_id)
    if op is None:
        raise NotFoundError("The operation was not found.", code="OperationNotFound")
    return json_response(operation_json(op, root(request)), status_code=200 if op.terminal else 202)
