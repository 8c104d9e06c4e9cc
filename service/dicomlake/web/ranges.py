"""HTTP Range requests (RFC 9110 §14) on single-part retrieves: instances as stored and bulk data.

One range: ``206`` with ``Content-Range``. Several: ``206`` ``multipart/byteranges`` (at most
`MAX_RANGES`; more, or a header that does not parse, is ignored and the whole value sent with 200, as
RFC 9110 allows). None satisfiable: ``416`` with ``Content-Range: bytes */size``. ``If-Range`` with an
ETag other than the representation's: the Range is ignored. Each range is one ranged storage read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dicomlake.storage.blob_store import BlobDownload
from dicomlake.web.multipart import closing_delimiter, new_boundary, part_header

MAX_RANGES = 16
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")

#: Opens a download of ``length`` bytes starting ``offset`` bytes into the representation.
Opener = Callable[[int, int], Awaitable[BlobDownload]]


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """No range of the request overlaps the representation."""


def parse_range(header: str | None, size: int) -> list[ByteRange] | None:
    """The ranges of a ``Range`` header over ``size`` bytes; None to ignore it (absent or malformed)."""
    if header is None:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    pieces = specs.split(",")
    if len(pieces) > MAX_RANGES:
        return None
    ranges: list[ByteRange] = []
    for piece in pieces:
        match = _SPEC.match(piece)
        if match is None:
            return None
        first, last = match.groups()
        if first == "" and last == "":
            return None
        if first == "":
            suffix = int(last)
            if suffix == 0:
                continue
            ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            continue
        ranges.append(ByteRange(start, min(end, size - 1)))
    if not ranges or size == 0:
        raise Unsatisfiable
    return ranges


def wanted_ranges(request: Request, size: int, etag: str) -> list[ByteRange] | None:
    """Ranges to serve, None for the whole representation; raises `Unsatisfiable`."""
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_range(request.headers.get("range"), size)


def unsatisfiable(size: int) -> Response:
    return JSONResponse(
        {"code": "RangeNotSatisfiable", "message": f"No requested range lies within the {size} bytes."},
        status_code=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


async def partial_response(
    ranges: list[ByteRange], size: int, media_type: str, etag: str, open_range: Opener
) -> Response:
    """206 for ``ranges`` (the first range is opened before the response starts)."""
    headers = {"Accept-Ranges": "bytes", "ETag": etag}
    first = await open_range(ranges[0].start, ranges[0].length)
    if len(ranges) == 1:
        headers["Content-Range"] = ranges[0].content_range(size)
        headers["Content-Length"] = str(ranges[0].length)
        return StreamingResponse(_chunks(first), status_code=206, media_type=media_type, headers=headers)
    boundary = new_boundary()
    part_headers = [part_header(boundary, media_type, {"Content-Range": r.content_range(size)}) for r in ranges]
    headers["Content-Length"] = str(
        sum(len(h) + r.length + 2 for h, r in zip(part_headers, ranges, strict=True)) + len(closing_delimiter(boundary))
    )

    async def body() -> AsyncIterator[bytes]:
        download: BlobDownload | None = first
        for r, head in zip(ranges, part_headers, strict=True):
            if download is None:
                download = await open_range(r.start, r.length)
            yield head
            async for chunk in download.chunks():
                yield chunk
            yield b"\r\n"
            download = None
        yield closing_delimiter(boundary)

    return StreamingResponse(
        body(), status_code=206, media_type=f"multipart/byteranges; boundary={boundary}", headers=headers
    )


async def _chunks(download: BlobDownload) -> AsyncIterator[bytes]:
    async for chunk in download.chunks():
        yield chunk
