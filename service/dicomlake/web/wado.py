"""WADO-RS (PS3.18 §10.4): instances, metadata and bulk data at study, series and instance level."""

from __future__ import annotations

import asyncio
import hashlib

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomlake.compat import behaviour
from dicomlake.errors import NotFoundError, PayloadTooLargeError
from dicomlake.features.retrieve import multipart_length, open_instance, stream_multipart, stream_single
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps
from dicomlake.web.json import DICOM_JSON
from dicomlake.web.media import choose_instance_rendition, parse_accept
from dicomlake.web.multipart import new_boundary
from dicomlake.web.partitions import base_path, partition_key
from dicomlake.web.uids import optional_path_uid, path_uid


def _level(series: str | None, sop: str | None) -> str:
    return "instance" if sop else "series" if series else "study"


def _not_found(level: str) -> NotFoundError:
    return NotFoundError(f"The requested {level} was not found.", code=f"{level.capitalize()}NotFound")


async def retrieve(request: Request) -> Response:
    d = deps(request)
    study = path_uid(request, "study")
    series = optional_path_uid(request, "series")
    sop = optional_path_uid(request, "instance")
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    instances = await index.find(key, study, series, sop)
    if not instances:
        raise _not_found(_level(series, sop))
    rendition = choose_instance_rendition(
        parse_accept(request.headers.get("accept")),
        stored_syntaxes={i.transfer_syntax_uid or "" for i in instances},
        single_allowed=sop is not None,
    )
    first = await open_instance(d.blobs, instances[0])
    if not rendition.multipart:
        syntax = instances[0].transfer_syntax_uid
        return StreamingResponse(
            stream_single(first),
            media_type=f"application/dicom; transfer-syntax={syntax}",
            headers={"Content-Length": str(instances[0].size)},
        )
    boundary = new_boundary()
    content_types = [f"application/dicom; transfer-syntax={i.transfer_syntax_uid}" for i in instances]
    length = multipart_length(instances, boundary, content_types)
    return StreamingResponse(
        stream_multipart(d.blobs, instances, first, boundary, content_types),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        headers={"Content-Length": str(length)},
    )


async def metadata(request: Request) -> Response:
    d = deps(request)
    study = path_uid(request, "study")
    series = optional_path_uid(request, "series")
    sop = optional_path_uid(request, "instance")
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    rows = await index.metadata(key, study, series, sop)
    if not rows:
        raise _not_found(_level(series, sop))
    with_bulk = behaviour(d.settings.compatibility).metadata_bulk_data_uris
    base = base_path(request)
    digest = hashlib.sha256(f"{with_bulk}|{base}".encode())
    for _, _, watermark, *_ in rows:
        digest.update(watermark.to_bytes(8, "big"))
    etag = f'"{digest.hexdigest()[:32]}"'
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    pieces: list[bytes] = []
    for _, text, _, st, se, sp in rows:
        if with_bulk:
            prefix = f"{base}/studies/{st}/series/{se}/instances/{sp}/bulkdata/"
            pieces.append(text.replace('"BulkDataURI": "bulkdata/', f'"BulkDataURI": "{prefix}').encode())
        else:
            data = orjson.loads(text)
            pieces.append(orjson.dumps(_drop_bulk(data)))
    body = b"[" + b",".join(pieces) + b"]"
    return Response(body, media_type=DICOM_JSON, headers={"ETag": etag, "Cache-Control": "no-cache"})


#: Files whose bulk data has no byte offset (deflated) are decoded whole to find the value: cap the size.
MAX_DECODE_BYTES = 256 * 1024 * 1024


async def _bulk_by_decoding(blobs: object, instance: object, path: str) -> Response:
    from dicomlake.features.retrieve import open_instance as _open

    size = instance.size  # type: ignore[attr-defined]
    if size > MAX_DECODE_BYTES:
        raise PayloadTooLargeError(
            "This bulk data value lies in a deflated file too large to decode on request.", code="BulkDataTooLarge"
        )
    download = await _open(blobs, instance)  # type: ignore[arg-type]
    data = await download.read_all()
    value = await asyncio.to_thread(_element_value, data, path)
    if value is None:
        raise NotFoundError("The instance has no bulk data at that path.", code="BulkDataNotFound")
    return Response(value, media_type="application/octet-stream")


def _element_value(data: bytes, path: str) -> bytes | None:
    import io

    import pydicom

    node: object = pydicom.dcmread(io.BytesIO(data), force=True)
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if i % 2 == 0:
            tag = int(segment, 16)
            if tag not in node:  # type: ignore[operator]
                return None
            node = node[tag]  # type: ignore[index]
            if i < len(segments) - 1:
                node = node.value  # type: ignore[attr-defined]
        else:
            index = int(segment)
            if index >= len(node):  # type: ignore[arg-type]
                return None
            node = node[index]  # type: ignore[index]
    value = node.value  # type: ignore[attr-defined]
    if isinstance(value, bytes):
        return value
    return None


def _drop_bulk(data: dict[str, dict[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for tag, attr in data.items():
        if "BulkDataURI" in attr:
            continue
        if attr.get("vr") == "SQ" and isinstance(attr.get("Value"), list):
            attr = {**attr, "Value": [_drop_bulk(item) if item else item for item in attr["Value"]]}  # type: ignore[attr-defined]
        out[tag] = attr
    return out


async def bulkdata(request: Request) -> Response:
    d = deps(request)
    study = path_uid(request, "study")
    series = path_uid(request, "series")
    sop = path_uid(request, "instance")
    path = str(request.path_params["path"]).strip("/")
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    instances = await index.find(key, study, series, sop)
    if not instances:
        raise _not_found("instance")
    instance = instances[0]
    location = instance.bulk.get(path)
    if location is None:
        raise NotFoundError("The instance has no bulk data at that path.", code="BulkDataNotFound")
    offset, length = location
    if offset is None or length is None:
        return await _bulk_by_decoding(d.blobs, instance, path)
    download = await open_instance(d.blobs, instance, offset=offset, length=length) if length else None
    if download is None:
        return Response(b"", media_type="application/octet-stream")
    return StreamingResponse(
        stream_single(download),
        media_type="application/octet-stream",
        headers={"Content-Length": str(length)},
    )
