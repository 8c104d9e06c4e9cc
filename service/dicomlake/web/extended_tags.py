"""Extended query tags (Azure DICOM service v2 API): ``POST/GET /v2/extendedquerytags``,
``GET/PATCH/DELETE /v2/extendedquerytags/{tag}``, ``GET /v2/extendedquerytags/{tag}/errors``. Global,
not under a partition (values are indexed per partition). Adding answers 202 with the reindex operation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomlake.errors import BadRequestError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError
from dicomlake.features.extended_tags import QUERY_STATUSES, error_message, parse_new_tags, parse_tag_path
from dicomlake.index.extended_tags import ExtendedTagIndex, TagRecord
from dicomlake.web.deps import deps

MAX_BODY = 1024 * 1024
JSON = "application/json"


def root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/v2"


def json_response(body: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=JSON, headers=headers)


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def tag_json(tag: TagRecord, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"path": tag.path, "vr": tag.vr}
    if tag.private_creator is not None:
        out["privateCreator"] = tag.private_creator
    out |= {"level": tag.level, "status": tag.status, "queryStatus": tag.query_status}
    if tag.error_count > 0:
        out["errors"] = {"count": tag.error_count, "href": f"{base}/extendedquerytags/{tag.path}/errors"}
    if tag.operation_id is not None and tag.status == "Adding":
        out["operation"] = {"id": str(tag.operation_id), "href": f"{base}/operations/{tag.operation_id}"}
    return out


async def _json_body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != JSON:
        raise UnsupportedMediaTypeError("The request body must be application/json.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY} bytes.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY} bytes.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequestError("The request body is not valid JSON.", code="InvalidJson") from e


def _paging(request: Request) -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        text = request.query_params.get(name)
        if text is None:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            raise BadRequestError(f"Query parameter '{name}' must be a whole number from {low} to {high}.")
        return int(text)

    unknown = sorted(set(request.query_params) - {"limit", "offset"})
    if unknown:
        raise BadRequestError(f"Unknown query parameter '{unknown[0][:64]}'; use limit and offset.")
    return number("limit", 100, 1, 200), number("offset", 0, 0, 1_000_000_000)


async def _existing(request: Request, index: ExtendedTagIndex) -> TagRecord:
    path = f"{parse_tag_path(request.path_params['tag']):08X}"
    tag = await index.get(path)
    if tag is None or tag.status == "Deleting":
        raise NotFoundError(f"The extended query tag {path} was not found.", code="ExtendedQueryTagNotFound")
    return tag


async def add_tags(request: Request) -> Response:
    d = deps(request)
    tags = parse_new_tags(await _json_body(request))
    op_id = await ExtendedTagIndex(d.pool).add(tags)
    if d.reindex is not None:
        d.reindex.nudge()
    href = f"{root(request)}/operations/{op_id}"
    return json_response({"id": str(op_id), "href": href}, status_code=202, headers={"Location": href})


async def list_tags(request: Request) -> Response:
    limit, offset = _paging(request)
    tags = await ExtendedTagIndex(deps(request).pool).list_tags(limit=limit, offset=offset)
    base = root(request)
    return json_response([tag_json(t, base) for t in tags if t.status != "Deleting"])


async def get_tag(request: Request) -> Response:
    tag = await _existing(request, ExtendedTagIndex(deps(request).pool))
    return json_response(tag_json(tag, root(request)))


async def update_tag(request: Request) -> Response:
    index = ExtendedTagIndex(deps(request).pool)
    tag = await _existing(request, index)
    body = await _json_body(request)
    status = body.get("queryStatus") if isinstance(body, dict) else None
    if not isinstance(status, str) or status.lower() not in QUERY_STATUSES or set(body) != {"queryStatus"}:
        raise BadRequestError(
            'The body must be {"queryStatus": "Enabled"} or {"queryStatus": "Disabled"}.',
            code="InvalidExtendedQueryTag",
        )
    updated = await index.set_query_status(tag.path, QUERY_STATUSES[status.lower()])
    if updated is None:
        raise NotFoundError(f"The extended query tag {tag.path} was not found.", code="ExtendedQueryTagNotFound")
    return json_response(tag_json(updated, root(request)))


async def delete_tag(request: Request) -> Response:
    index = ExtendedTagIndex(deps(request).pool)
    path = f"{parse_tag_path(request.path_params['tag']):08X}"
    if not await index.delete(path):
        raise NotFoundError(f"The extended query tag {path} was not found.", code="ExtendedQueryTagNotFound")
    return Response(status_code=204)


async def tag_errors(request: Request) -> Response:
    index = ExtendedTagIndex(deps(request).pool)
    tag = await _existing(request, index)
    limit, offset = _paging(request)
    errors = await index.errors(tag.tag_key, limit=limit, offset=offset)
    return json_response(
        [
            {
                "partitionName": e.partition,
                "studyInstanceUid": e.study_uid,
                "seriesInstanceUid": e.series_uid,
                "sopInstanceUid": e.sop_uid,
                "createdTime": timestamp(e.created_at),
                "errorMessage": error_message(e.error_code, tag.vr),
            }
            for e in errors
        ]
    )
