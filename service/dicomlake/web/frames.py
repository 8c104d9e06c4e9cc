"""WADO-RS frames (PS3.18 §10.4.1.1.5): ``GET .../instances/{instance}/frames/{1,2,3}``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomlake.dicom.frames import parse_frame_list
from dicomlake.dicom.transcode import can_transcode
from dicomlake.errors import InvalidQueryError, NotFoundError
from dicomlake.features.frames import (
    frame_source,
    frame_syntax,
    frames_in,
    pixel_attributes,
    stored_frame_size,
)
from dicomlake.web.deps import deps
from dicomlake.web.lookup import find_instance
from dicomlake.web.media import choose_frame_rendition, parse_accept
from dicomlake.web.multipart import closing_delimiter, new_boundary, part_header


async def frames(request: Request) -> Response:
    d = deps(request)
    instance = await find_instance(request)
    source = await frame_source(d.pool, d.blobs, instance)
    try:
        numbers = parse_frame_list(str(request.path_params["frames"]), source.number_of_frames)
    except LookupError as e:
        raise NotFoundError(f"{e.args[0]}.", code="FrameNotFound") from e
    except ValueError as e:
        raise InvalidQueryError(f"Invalid frame list: {e.args[0]}.", code="InvalidFrameNumber") from e
    stored = frame_syntax(source)
    rendition = choose_frame_rendition(
        parse_accept(request.headers.get("accept")),
        stored_syntax=stored,
        single_allowed=len(numbers) == 1,
        can_transcode=can_transcode,
    )
    target = rendition.transfer_syntax
    syntax = stored if target == "*" else target
    attrs = await pixel_attributes(d.pool, instance) if syntax != stored else None
    content_type = f"{rendition.media_type}; transfer-syntax={syntax}"
    bodies = frames_in(d.blobs, source, numbers, target, attrs)
    first = await anext(bodies)  # storage and codec errors become statuses before the response starts
    if not rendition.multipart:
        await bodies.aclose()
        return Response(first, media_type=content_type)
    boundary = new_boundary()
    headers: dict[str, str] = {}
    sizes = [stored_frame_size(source, n) for n in numbers]
    if syntax == stored and all(s is not None for s in sizes):
        header_bytes = len(part_header(boundary, content_type))
        total = sum(header_bytes + (s or 0) + 2 for s in sizes) + len(closing_delimiter(boundary))
        headers["Content-Length"] = str(total)
    return StreamingResponse(
        _multipart(first, bodies, boundary, content_type),
        media_type=f'multipart/related; type="{rendition.media_type}"; boundary={boundary}',
        headers=headers,
    )


async def _multipart(
    first: bytes, rest: AsyncIterator[bytes], boundary: str, content_type: str
) -> AsyncIterator[bytes]:
    header = part_header(boundary, content_type)
    yield header + first + b"\r\n"
    async for body in rest:
        yield header + body + b"\r\n"
    yield closing_delimiter(boundary)
