"""Streaming ``multipart/related`` for STOW-RS (reader) and WADO-RS (writer).

Reader: python-multipart's low-level ``MultipartParser`` is the sans-IO core (fuzzed upstream, used by
Starlette). Its callbacks only copy bytes into the current part's spool (a ``SpooledTemporaryFile``:
memory up to 8 MiB, disk beyond) and hash them; all awaits happen in :func:`iter_related_parts`, which
yields each part as soon as it is complete, so a 2 GiB part never sits in memory and the request body is
consumed at upload speed.

The 128-byte preamble of a Part 10 file is zeroed while spooling (the data contract stores it zeroed),
so the size and SHA-256 describe exactly the bytes that will be stored.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from dicomlake.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from dicomlake.web.media import MediaType, parse_media_type

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
_PREAMBLE = 128


@dataclass(frozen=True, slots=True)
class PartLimits:
    max_parts: int = 10_000
    max_part_bytes: int = 8 * 1024**3
    max_request_bytes: int = 32 * 1024**3
    max_header_bytes: int = 8 * 1024


@dataclass(slots=True)
class ReceivedPart:
    """One body part, spooled. ``file`` is positioned at 0 when handed out; the consumer closes it."""

    content_type: str
    file: IO[bytes]
    size: int
    sha256: str
    index: int

    def close(self) -> None:
        self.file.close()


@dataclass(slots=True)
class _PartWriter:
    """Receives one part's bytes; zeroes a Part 10 preamble on the way."""

    file: IO[bytes] = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    )
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    head_done: bool = False

    def write(self, data: bytes) -> None:
        if not self.head_done:
            self.head += data
            if len(self.head) < _PREAMBLE + 4:
                return
            data = bytes(self.head)
            self.head = bytearray()
            self.head_done = True
            if data[_PREAMBLE : _PREAMBLE + 4] == b"DICM":
                data = bytes(_PREAMBLE) + data[_PREAMBLE:]
        self.file.write(data)
        self.hasher.update(data)
        self.size += len(data)

    def finish(self) -> None:
        if not self.head_done:
            data = bytes(self.head)
            self.head_done = True
            self.file.write(data)
            self.hasher.update(data)
            self.size += len(data)
        self.file.seek(0)


def related_boundary(content_type: str | None) -> tuple[str, MediaType]:
    """Validate a STOW request's Content-Type and return its boundary (415 unless multipart/related of
    application/dicom)."""
    if not content_type:
        raise UnsupportedMediaTypeError("The request has no Content-Type.")
    media = parse_media_type(content_type)
    if not media.is_multipart_related:
        raise UnsupportedMediaTypeError(
            f'Content-Type {media.type} is not supported: use multipart/related; type="application/dicom" '
            "or application/dicom."
        )
    if media.related_type not in (None, "application/dicom"):
        raise UnsupportedMediaTypeError(
            f"multipart/related of type {media.related_type} is not supported: the type must be application/dicom."
        )
    boundary = media.params.get("boundary")
    if not boundary or len(boundary) > 70:
        raise BadRequestError("The multipart/related Content-Type needs a boundary parameter of 1-70 characters.")
    return boundary, media


async def iter_related_parts(
    chunks: AsyncIterable[bytes], boundary: str, *, limits: PartLimits
) -> AsyncIterator[ReceivedPart]:
    """Yield each part of a multipart/related body as soon as it is complete."""
    finished: list[ReceivedPart] = []
    current: _PartWriter | None = None
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[str, str] = {}
    header_bytes = 0
    count = 0
    total = 0
    ended = False

    def on_part_begin() -> None:
        nonlocal current, header_bytes, count
        count += 1
        if count > limits.max_parts:
            raise PayloadTooLargeError(f"The request has more than {limits.max_parts} parts.")
        current = _PartWriter()
        headers.clear()
        header_bytes = 0

    def on_header_field(data: bytes, start: int, end: int) -> None:
        nonlocal header_bytes
        header_bytes += end - start
        if header_bytes > limits.max_header_bytes:
            raise PayloadTooLargeError(f"A part's headers exceed {limits.max_header_bytes} bytes.")
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        nonlocal header_bytes
        header_bytes += end - start
        if header_bytes > limits.max_header_bytes:
            raise PayloadTooLargeError(f"A part's headers exceed {limits.max_header_bytes} bytes.")
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[header_field.decode("latin-1").strip().lower()] = header_value.decode("latin-1").strip()
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        assert current is not None
        if current.size + (end - start) > limits.max_part_bytes:
            raise PayloadTooLargeError(f"A part is larger than {limits.max_part_bytes} bytes.")
        current.write(data[start:end])

    def on_part_end() -> None:
        nonlocal current
        assert current is not None
        current.finish()
        finished.append(
            ReceivedPart(
                content_type=headers.get("content-type", "application/dicom"),
                file=current.file,
                size=current.size,
                sha256=current.hasher.hexdigest(),
                index=count - 1,
            )
        )
        current = None

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_end": on_end,
        },
        max_header_count=32,
        max_header_size=limits.max_header_bytes,
    )
    # RFC 2046 allows a preamble before the first delimiter; python-multipart does not, so skip it here.
    first_delimiter = b"--" + boundary.encode("latin-1")
    head = bytearray()
    in_preamble = True
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > limits.max_request_bytes:
                raise PayloadTooLargeError(f"The request is larger than {limits.max_request_bytes} bytes.")
            if in_preamble:
                head += chunk
                at = head.find(first_delimiter)
                if at < 0:
                    if len(head) > 64 * 1024:
                        raise BadRequestError("The multipart body does not start with its boundary.")
                    continue
                chunk = bytes(head[at:])
                head.clear()
                in_preamble = False
            try:
                parser.write(chunk)
            except MultipartParseError as e:
                raise BadRequestError(f"The multipart body is malformed: {e}") from e
            while finished:
                yield finished.pop(0)
        if not ended:
            raise BadRequestError("The multipart body ended before its closing boundary.")
    finally:
        for part in finished:
            part.close()
        if current is not None:
            current.file.close()


async def spool_single_part(chunks: AsyncIterable[bytes], *, limits: PartLimits) -> ReceivedPart:
    """A single-part ``application/dicom`` body, spooled like a multipart part."""
    writer = _PartWriter()
    try:
        async for chunk in chunks:
            if writer.size + len(chunk) > limits.max_part_bytes:
                raise PayloadTooLargeError(f"The instance is larger than {limits.max_part_bytes} bytes.")
            writer.write(chunk)
        writer.finish()
    except BaseException:
        writer.file.close()
        raise
    return ReceivedPart("application/dicom", writer.file, writer.size, writer.hasher.hexdigest(), 0)


def new_boundary() -> str:
    return secrets.token_hex(16)


def part_header(boundary: str, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing_delimiter(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("latin-1")
