"""WADO-RS frames: locate each frame's bytes (index, no file read), read only those ranges, transcode.

Fast path: the frame offset index (native: computed from ``instances.pixel_data``; encapsulated: the
``instance_frames`` row written at commit) gives each frame's byte range; a frame is one ranged read
with the stored ETag as condition. Slower paths, for what the index cannot address:

* encapsulated instances committed before migration 0004 (no row): the Pixel Data value alone (not
  the file) is read, up to `MAX_SLOW_PATH_BYTES`, and indexed in memory; beyond, 406;
* deflated files (no offsets at all): the whole file is read and inflated, up to the same cap.

CPU work (decode, encode, render) runs in `run_cpu`: a thread pool sized to the cores, with a bound on
waiting work so that a burst answers 503 quickly instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from dicomlake.dicom.frames import (
    FrameGeometry,
    FrameRange,
    PackedFrameIndex,
    encapsulated_frame_index,
    native_frame_range,
)
from dicomlake.dicom.transcode import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MAX_TRANSCODE_BYTES,
    PixelAttributes,
    check_pixel_budget,
    transcode_frame,
    transcode_instance,
)
from dicomlake.errors import DependencyUnavailableError, NotAcceptableError, NotFoundError
from dicomlake.features.retrieve import open_instance
from dicomlake.index.instances import StoredInstance, frame_index, instance_metadata
from dicomlake.storage.blob_store import AzureBlobStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Slow paths read at most this many bytes (pixel data value or deflated file) to serve one request.
MAX_SLOW_PATH_BYTES = 256 * 1024 * 1024
#: Frames fetched from storage concurrently while a multipart response streams.
FRAME_PREFETCH = 4

_CPU_WORKERS = max(1, os.cpu_count() or 1)
_executor = ThreadPoolExecutor(max_workers=_CPU_WORKERS, thread_name_prefix="dicomlake-cpu")
_MAX_WAITING = 8 * _CPU_WORKERS
_waiting = 0


async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the CPU pool (one thread per core). More than `_MAX_WAITING` jobs
    submitted and not finished: 503 with Retry-After, rather than an unbounded queue."""
    global _waiting
    if _waiting >= _MAX_WAITING:
        raise DependencyUnavailableError(
            "The server is busy decoding images; retry shortly.", code="ImageProcessingBusy"
        )
    _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_executor, fn, *args)
    finally:
        _waiting -= 1


@dataclass(frozen=True, slots=True)
class FrameSource:
    """How to get the frames of one instance."""

    instance: StoredInstance
    geometry: FrameGeometry
    transfer_syntax: str
    ranges: Callable[[int], FrameRange] | None  # None: frames come from `memory`
    memory: list[bytes] | None = None

    @property
    def number_of_frames(self) -> int:
        return self.geometry.number_of_frames


def no_pixel_data() -> NotFoundError:
    return NotFoundError("The instance has no pixel data.", code="PixelDataNotFound")


async def frame_source(pool: asyncpg.Pool, blobs: AzureBlobStore, instance: StoredInstance) -> FrameSource:
    """Locate an instance's frames (reads storage only on the slow paths)."""
    if not instance.pixel_data:
        raise no_pixel_data()
    geometry = FrameGeometry.from_json(instance.pixel_data)
    syntax = instance.transfer_syntax_uid or EXPLICIT_VR_LITTLE_ENDIAN
    if geometry.offset is None:
        return FrameSource(instance, geometry, syntax, None, await _frames_by_inflating(blobs, instance, geometry))
    if not geometry.encapsulated:
        if native_frame_range(geometry, geometry.number_of_frames) is None:
            raise NotAcceptableError(
                "The frames of this instance are not byte-aligned (1-bit pixel data) or do not match its "
                "geometry; retrieve the instance instead.",
                code="FramesNotAddressable",
            )

        def native(number: int) -> FrameRange:
            found = native_frame_range(geometry, number)
            assert found is not None
            return found

        return FrameSource(instance, geometry, syntax, native)
    packed = await frame_index(pool, instance.watermark)
    if packed is not None:
        index = PackedFrameIndex(packed)
        if len(index) == geometry.number_of_frames:
            return FrameSource(instance, geometry, syntax, index.frame)
    return FrameSource(instance, geometry, syntax, await _index_from_value(blobs, instance, geometry))


async def _index_from_value(
    blobs: AzureBlobStore, instance: StoredInstance, geometry: FrameGeometry
) -> Callable[[int], FrameRange]:
    """Slow path: no stored index (stored before migration 0004, or boundaries unknown at store)."""
    assert geometry.offset is not None
    length = (geometry.length or 0) + 8
    if length > MAX_SLOW_PATH_BYTES:
        raise NotAcceptableError(
            "This instance was stored without a frame index and its pixel data is too large to index on "
            "request; store it again to serve its frames.",
            code="FrameIndexMissing",
        )
    download = await open_instance(blobs, instance, offset=geometry.offset, length=length)
    data = await download.read_all()
    shifted = _Shifted(data, geometry.offset)
    index = await run_cpu(
        encapsulated_frame_index, shifted, geometry.offset, geometry.length or 0, geometry.number_of_frames
    )
    if index is None or len(index) != geometry.number_of_frames:
        raise NotAcceptableError(
            "The frame boundaries of this instance's compressed pixel data cannot be determined "
            "(no offset table and fragments do not match frames).",
            code="FramesNotAddressable",
        )
    return index.frame


class _Shifted(io.BytesIO):
    """Bytes that were at ``base`` in the file, readable with file positions."""

    def __init__(self, data: bytes, base: int) -> None:
        super().__init__(data)
        self._base = base

    def seek(self, pos: int, whence: int = 0) -> int:
        return super().seek(pos - self._base if whence == 0 else pos, whence) + (self._base if whence == 0 else 0)


async def _frames_by_inflating(blobs: AzureBlobStore, instance: StoredInstance, geometry: FrameGeometry) -> list[bytes]:
    """Slow path for deflated files: inflate the whole file (capped) and cut the native frames."""
    if instance.size > MAX_SLOW_PATH_BYTES:
        raise NotAcceptableError(
            "Frames of deflated instances are decoded from the whole file, and this one is too large.",
            code="FramesNotAddressable",
        )
    download = await open_instance(blobs, instance)
    data = await download.read_all()
    return await run_cpu(_inflated_frames, data)


def _inflated_frames(data: bytes) -> list[bytes]:
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise no_pixel_data()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixel = ds.PixelData
    if ds["PixelData"].is_undefined_length:
        return list(generate_frames(pixel, number_of_frames=frames))
    size = len(pixel) // frames
    return [pixel[i * size : (i + 1) * size] for i in range(frames)]


async def read_frame(blobs: AzureBlobStore, source: FrameSource, number: int) -> bytes:
    """The stored bytes of frame ``number`` (1-based): exactly its byte range, one storage request."""
    if source.memory is not None:
        return source.memory[number - 1]
    assert source.ranges is not None
    frame = source.ranges(number)
    download = await open_instance(blobs, source.instance, offset=frame.start, length=frame.end - frame.start)
    return frame.extract(await download.read_all())


def stored_frame_size(source: FrameSource, number: int) -> int | None:
    if source.ranges is None:
        return None
    return source.ranges(number).size


def frame_syntax(source: FrameSource) -> str:
    """The transfer syntax of the stored frame bytes (a deflated file's frames are native LE)."""
    if source.transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return EXPLICIT_VR_LITTLE_ENDIAN
    return source.transfer_syntax


async def pixel_attributes(pool: asyncpg.Pool, instance: StoredInstance) -> PixelAttributes:
    """Image Pixel attributes from the stored metadata (one index query, no file read)."""
    return PixelAttributes.from_metadata(await instance_metadata(pool, instance.watermark))


async def frames_in(
    blobs: AzureBlobStore,
    source: FrameSource,
    numbers: list[int],
    target: str,
    attrs: PixelAttributes | None,
) -> AsyncGenerator[bytes, None]:
    """Each requested frame's bytes in ``target`` ("*" = as stored), in request order. Up to
    `FRAME_PREFETCH` frames are read ahead concurrently; memory stays bounded by that."""
    stored = frame_syntax(source)
    convert = target not in ("*", stored)
    if convert:
        assert attrs is not None
        check_pixel_budget(attrs, "transcode")

    async def one(number: int) -> bytes:
        data = await read_frame(blobs, source, number)
        if convert:
            assert attrs is not None
            return await run_cpu(transcode_frame, data, attrs, stored, target)
        return data

    pending: list[asyncio.Task[bytes]] = []
    queue = list(numbers)
    try:
        while queue or pending:
            while queue and len(pending) < FRAME_PREFETCH:
                pending.append(asyncio.create_task(one(queue.pop(0))))
            yield await pending.pop(0)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def check_transcodable_size(instances: list[StoredInstance], target: str) -> None:
    """406 before anything is sent when an instance to transcode is larger than the whole-file cap."""
    for instance in instances:
        if needs_transcoding(instance, target) and instance.size > MAX_TRANSCODE_BYTES:
            raise NotAcceptableError(
                f"Instance {instance.sop_uid} is {instance.size} bytes, more than the {MAX_TRANSCODE_BYTES} this "
                "server transcodes; ask for transfer-syntax=* or retrieve its frames.",
                code="TooLargeToTranscode",
            )


def needs_transcoding(instance: StoredInstance, target: str) -> bool:
    return target != "*" and (instance.transfer_syntax_uid or EXPLICIT_VR_LITTLE_ENDIAN) != target


async def transcoded_instance(blobs: AzureBlobStore, instance: StoredInstance, target: str) -> bytes:
    """The whole instance in ``target`` (reads the whole file: capped by `check_transcodable_size`)."""
    download = await open_instance(blobs, instance)
    data = await download.read_all()
    return await run_cpu(transcode_instance, data, target)
