"""``POST /v2/operations/rebuild-from-lake``: rebuild the index from the files in the lake, as a
long-running operation (202 ``{id, href}`` + ``Location``; progress at ``GET /v2/operations/{id}``).

Global, not under a partition: the optional JSON body ``{"partition": "name"}`` limits the rebuild to one
partition (which need not exist in the index: after a database loss it does not). The work is done by
the rebuild worker of any replica (``jobs/rebuild.py``). 409 ``OperationAlreadyRunning`` while another
rebuild is active."""

from __future__ import annotations

import re

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomlake.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from dicomlake.jobs.rebuild import start_rebuild
from dicomlake.web.deps import deps
from dicomlake.web.extended_tags import json_response, root

MAX_BODY = 4096
_PARTITION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


async def _partition(request: Request) -> str | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY} bytes.")
    if not body.strip():
        return None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaTypeError("The request body must be application/json.")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequestError("The request body is not valid JSON.", code="InvalidJson") from e
    if not isinstance(parsed, dict) or not set(parsed) <= {"partition"}:
        raise BadRequestError('The body must be empty or {"partition": "name"}.', code="InvalidRebuildRequest")
    name = parsed.get("partition")
    if name is None:
        return None
    if not isinstance(name, str) or not _PARTITION.match(name):
        raise BadRequestError(
            "A partition name is 1-64 characters of letters, digits, '.', '_' and '-'.", code="InvalidPartitionName"
        )
    return name


async def rebuild_from_lake(request: Request) -> Response:
    d = deps(request)
    partition = await _partition(request)
    op_id = await start_rebuild(d.pool, partition)
    if d.rebuild is not None:
        d.rebuild.nudge()
    href = f"{root(request)}/operations/{op_id}"
    return json_response({"id": str(op_id), "href": href}, status_code=202, headers={"Location": href})
