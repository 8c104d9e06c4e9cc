"""WADO-RS (PS3.18 §10.4): instances, metadata and bulk data at study, series and instance level."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomlake.compat import behaviour
from dicomlake.dicom.header import metadata_without_bulk
from dicomlake.dicom.transcode import can_transcode
from dicomlake.errors import NotFoundError, PayloadTooLargeError
from dicomlake.features.frames import check_transcodable_size, needs_transcoding, transcoded_instance
from dicomlake.features.retrieve import multipart_length, open_instance, stream_multipart, stream_single
from dicomlake.index.instances import InstanceIndex, StoredInstance
from dicomlake.storage.blob_store import AzureBlobStore, BlobDownload
from dicomlake.web.deps import deps
from dicomlake.web.json import DICOM_JSON
from dicomlake.web.lookup import find_instance, find_instances
from dicomlake.web.media import choose_instance_rendition, parse_accept
from dicomlake.web.multipart import closing_delimiter, new_boundary, part_header
from dicomlake.web.partitions import base_path, partition_key
from dicomlake.web.ranges import Unsatisfiable, partial_response, unsatisfiable, wanted_ranges
from dicomlake.web.uids import path_scope


async def retrieve(request: Request) -> Response:
    d = deps(request)
    sop = path_scope(request).sop
    instances = await find_instances(request)
    rendition = choose_instance_rendition(
        parse_accept(request.headers.get("accept")),
        stored_syntaxes={i.transfer_syntax_uid or "" for i in instances},
        single_allowed=sop is not None,
        can_transcode=can_transcode,
    )
    target = rendition.transfer_syntax
    if any(needs_transcoding(i, target) for i in instances):
        return await _transcoded(d.blobs, instances, target, multipart=rendition.multipart)
    if not rendition.multipart:
        return await _single_as_stored(request, d.blobs, instances[0])
    first = await open_instance(d.blobs, instances[0])
    boundary = new_boundary()
    content_types = [f"application/dicom; transfer-syntax={i.transfer_syntax_uid}" for i in instances]
    length = multipart_length(instances, boundary, content_types)
    return StreamingResponse(
        stream_multipart(d.blobs, instances, first, boundary, content_types),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        headers={"Content-Length": str(length)},
    )


async def _single_as_stored(request: Request, blobs: AzureBlobStore, instance: StoredInstance) -> Response:
    """One instance as stored, honouring Range (``web/ranges.py``)."""
    media_type = f"application/dicom; transfer-syntax={instance.transfer_syntax_uid}"
    etag = f'"{instance.sha256.hex()}"'
    try:
        ranges = wanted_ranges(request, instance.size, etag)
    except Unsatisfiable:
        return unsatisfiable(instance.size)
    if ranges is not None:

        async def open_range(offset: int, length: int) -> BlobDownload:
            return await open_instance(blobs, instance, offset=offset, length=length)

        return await partial_response(ranges, instance.size, media_type, etag, open_range)
    first = await open_instance(blobs, instance)
    return StreamingResponse(
        stream_single(first),
        media_type=media_type,
        headers={"Content-Length": str(instance.size), "Accept-Ranges": "bytes", "ETag": etag},
    )


async def _transcoded(
    blobs: AzureBlobStore, instances: list[StoredInstance], target: str, *, multipart: bool
) -> Response:
    """Instances in another transfer syntax: each file is read whole and transcoded off the event loop
    (the first before the response starts, so a codec failure is a 406, not a broken body)."""
    check_transcodable_size(instances, target)
    content_type = f"application/dicom; transfer-syntax={target}"

    async def one(instance: StoredInstance) -> bytes:
        if needs_transcoding(instance, target):
            return await transcoded_instance(blobs, instance, target)
        return await (await open_instance(blobs, instance)).read_all()

    first = await one(instances[0])
    if not multipart:
        return Response(first, media_type=content_type)
    boundary = new_boundary()

    async def body() -> AsyncIterator[bytes]:
        header = part_header(boundary, content_type)
        yield header + first + b"\r\n"
        for instance in instances[1:]:
            yield header + await one(instance) + b"\r\n"
        yield closing_delimiter(boundary)

    return StreamingResponse(body(), media_type=f'multipart/related; type="application/dicom"; boundary={boundary}')


async def metadata(request: Request) -> Response:
    d = deps(request)
    scope = path_scope(request)
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    rows = await index.metadata(key, scope.study, scope.series, scope.sop)
    if not rows:
        raise scope.not_found()
    with_bulk = behaviour(d.settings.compatibility).metadata_bulk_data_uris
    base = base_path(request)
    digest = hashlib.sha256(f"{with_bulk}|{base}".encode())
    for row in rows:
        digest.update(row.watermark.to_bytes(8, "big"))
    etag = f'"{digest.hexdigest()[:32]}"'
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    pieces: list[bytes] = []
    for row in rows:
        if with_bulk:
            prefix = f"{base}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_uid}/bulkdata/"
            pieces.append(row.json_text.replace('"BulkDataURI": "bulkdata/', f'"BulkDataURI": "{prefix}').encode())
        else:
            pieces.append(orjson.dumps(metadata_without_bulk(orjson.loads(row.json_text))))
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


async def bulkdata(request: Request) -> Response:
    d = deps(request)
    path = str(request.path_params["path"]).strip("/")
    instance = await find_instance(request)
    location = instance.bulk.get(path)
    if location is None:
        raise NotFoundError("The instance has no bulk data at that path.", code="BulkDataNotFound")
    offset, length = location
    if offset is None or length is None:
        return await _bulk_by_decoding(d.blobs, instance, path)
    etag = f'"{instance.sha256.hex()[:32]}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"'
    if length:
        try:
            ranges = wanted_ranges(request, length, etag)
        except Unsatisfiable:
            return unsatisfiable(length)
        if ranges is not None:
            value_offset = offset

            async def open_range(start: int, size: int) -> BlobDownload:
                return await open_instance(d.blobs, instance, offset=value_offset + start, length=size)

            return await partial_response(ranges, length, "application/octet-stream", etag, open_range)
    download = await open_instance(d.blobs, instance, offset=offset, length=length) if length else None
    if download is None:
        return Response(b"", media_type="application/octet-stream")
    return StreamingResponse(
        stream_single(download),
        media_type="application/octet-stream",
        headers={"Content-Length": str(length), "Accept-Ranges": "bytes", "ETag": etag},
    )
