"""Change feed, Microsoft v2 compatible: ``GET /changefeed`` and ``GET /changefeed/latest``.

Query parameters (names case-insensitive): ``startTime`` (inclusive) and ``endTime`` (exclusive),
ISO 8601 (UTC when no offset is given); ``offset`` (entries to skip, >= 0, default 0); ``limit``
(1-200, default 100); ``includemetadata`` (true|false, default true). Entries are camelCase JSON, as
the Azure service's System.Text.Json serializer writes them; see docs/conformance.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomlake.compat import behaviour
from dicomlake.errors import InvalidQueryError
from dicomlake.index.changefeed import ChangeFeed, ChangeFeedEntry
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps
from dicomlake.web.partitions import base_path, partition_key

DEFAULT_LIMIT = 100
MAX_LIMIT = 200
MIN_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
MAX_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
_KNOWN = {"starttime", "endtime", "offset", "limit", "includemetadata"}


def _params(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        key = name.lower()
        if key in _KNOWN:
            if key in out:
                raise InvalidQueryError(f"The query parameter {name} is given more than once.")
            out[key] = value
    return out


def _time(params: dict[str, str], name: str, default: dt.datetime) -> dt.datetime:
    raw = params.get(name.lower())
    if raw is None:
        return default
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError as e:
        raise InvalidQueryError(f"{name} must be an ISO 8601 date and time, e.g. 2024-01-31T10:00:00Z.") from e
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _int(params: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name.lower())
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError as e:
        raise InvalidQueryError(f"{name} must be an integer.") from e
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidQueryError(f"{name} must be {bound}.")
    return value


def _include_metadata(params: dict[str, str]) -> bool:
    raw = params.get("includemetadata")
    if raw is None:
        return True
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidQueryError("includemetadata must be true or false.")
    return value == "true"


def _bulk(data: Any, prefix: str | None) -> Any:
    """Binary values as in WADO metadata: absolute BulkDataURIs (``prefix``) or omitted (None)."""
    out: dict[str, Any] = {}
    for tag, attr in data.items():
        if "BulkDataURI" in attr:
            if prefix is None:
                continue
            attr = {**attr, "BulkDataURI": prefix + attr["BulkDataURI"]}
        elif attr.get("vr") == "SQ" and isinstance(attr.get("Value"), list):
            attr = {**attr, "Value": [_bulk(item, prefix) if item else item for item in attr["Value"]]}
        out[tag] = attr
    return out


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _json(entry: ChangeFeedEntry, base: str, with_bulk_uris: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sequence": entry.sequence,
        "partitionName": entry.partition_name,
        "studyInstanceUid": entry.study_uid,
        "seriesInstanceUid": entry.series_uid,
        "sopInstanceUid": entry.sop_uid,
        "action": entry.action,
        "timestamp": _timestamp(entry.timestamp),
        "state": entry.state,
    }
    if entry.metadata_json is not None:
        prefix = (
            f"{base}/studies/{entry.study_uid}/series/{entry.series_uid}/instances/{entry.sop_uid}/"
            if with_bulk_uris
            else None
        )
        out["metadata"] = _bulk(orjson.loads(entry.metadata_json), prefix)
    if entry.blob_name is not None:
        out["filePath"] = entry.blob_name
    return out


def _response(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def changefeed(request: Request) -> Response:
    d = deps(request)
    params = _params(request)
    start = _time(params, "startTime", MIN_TIME)
    end = _time(params, "endTime", MAX_TIME)
    if start > end:
        raise InvalidQueryError("startTime must not be after endTime.")
    offset = _int(params, "offset", 0, 0, None)
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    include = _include_metadata(params)
    key = await partition_key(request, InstanceIndex(d.pool), create=False)
    entries = await ChangeFeed(d.pool).read(
        key, start=start, end=end, offset=offset, limit=limit, include_metadata=include
    )
    with_bulk = behaviour(d.settings.compatibility).metadata_bulk_data_uris
    base = base_path(request)
    return _response([_json(e, base, with_bulk) for e in entries])


async def latest(request: Request) -> Response:
    d = deps(request)
    include = _include_metadata(_params(request))
    key = await partition_key(request, InstanceIndex(d.pool), create=False)
    entry = await ChangeFeed(d.pool).latest(key, include_metadata=include)
    if entry is None:
        return Response(status_code=204)
    with_bulk = behaviour(d.settings.compatibility).metadata_bulk_data_uris
    return _response(_json(entry, base_path(request), with_bulk))
