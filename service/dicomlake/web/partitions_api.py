"""``GET /v2/partitions``: every data partition, as the Azure service lists them
(``partitionKey``, ``partitionName``, ``createdDate``); 204 when there is none."""

from __future__ import annotations

import datetime as dt

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomlake.index.partitions import list_partitions
from dicomlake.web.deps import deps


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def partitions(request: Request) -> Response:
    found = await list_partitions(deps(request).pool)
    if not found:
        return Response(status_code=204)
    body = [{"partitionKey": p.key, "partitionName": p.name, "createdDate": _timestamp(p.created_at)} for p in found]
    return Response(orjson.dumps(body), media_type="application/json")
