"""STOW-RS orchestration: validate, reserve, upload, commit; one outcome per instance.

Per instance: parse and validate the header from the spooled part (in a worker thread), check the
path's study, look for an existing committed copy (idempotent retry vs 45070), reserve a pending row,
stream the spool into the lake in staged blocks while renewing the reservation's lease, then commit
(row visible + change feed) in one transaction. Any failure after the reservation discards it in a
scope the request's cancellation cannot reach, so a client that disconnects leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from dicomlake.compat import Behaviour
from dicomlake.crashpoints import crash_point
from dicomlake.dicom.frames import Seekable, stored_frame_index
from dicomlake.dicom.header import InstanceHeader, read_instance_header
from dicomlake.errors import DicomWebError, InvalidInstanceError
from dicomlake.index.instances import (
    InstanceBeingStoredError,
    InstanceExistsError,
    InstanceIndex,
    InstanceKey,
    Reservation,
)
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout
from dicomlake.web.multipart import ReceivedPart

logger = logging.getLogger(__name__)

PROCESSING_FAILURE = 0x0110  # 272
VALIDATION_FAILED = 0xA900  # 43264
CANNOT_UNDERSTAND = 0xC000  # 49152
INSTANCE_EXISTS = 0xB00E  # 45070
INSTANCE_BEING_STORED = 0xB00F  # 45071
READ_CHUNK = 4 * 1024 * 1024
LEASE_RENEW_SECONDS = 60.0


@dataclass(slots=True)
class InstanceOutcome:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    failure_reason: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


@dataclass(frozen=True, slots=True)
class StoreContext:
    partition: str
    partition_key: int
    study_in_path: str | None
    upsert: bool


async def _spool_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    file.seek(0)
    while True:
        chunk = await asyncio.to_thread(file.read, READ_CHUNK)
        if not chunk:
            return
        yield chunk


class StoreService:
    def __init__(self, index: InstanceIndex, blobs: AzureBlobStore, layout: LakeLayout, behaviour: Behaviour) -> None:
        self._index = index
        self._blobs = blobs
        self._layout = layout
        self._behaviour = behaviour

    def blob_name(self, partition: str, key: InstanceKey, watermark: int) -> str:
        return self._layout.instance_blob(partition, key.study_uid, key.series_uid, key.sop_uid, watermark)

    async def store(self, part: ReceivedPart, ctx: StoreContext) -> InstanceOutcome:
        try:
            header = await asyncio.to_thread(read_instance_header, part.file, part.size)
        except InvalidInstanceError as e:
            reason = getattr(e, "failure_reason", VALIDATION_FAILED)
            return InstanceOutcome(None, None, failure_reason=reason, error=e.message)
        outcome = InstanceOutcome(
            header.sop_class_uid,
            header.sop_instance_uid,
            header.study_instance_uid,
            header.series_instance_uid,
            warnings=list(header.warnings),
        )
        if ctx.study_in_path is not None and header.study_instance_uid != ctx.study_in_path:
            outcome.failure_reason = self._behaviour.study_mismatch_failure_reason
            outcome.error = "StudyInstanceUID (0020,000D) does not match the study in the request path."
            return outcome
        key = InstanceKey(ctx.partition, header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid)
        try:
            existing = await self._index.get_committed(ctx.partition_key, key)
            if existing is not None and not ctx.upsert:
                same = existing.size == part.size and existing.sha256.hex() == part.sha256
                if same and self._behaviour.identical_restore_succeeds:
                    return outcome  # an identical retry: already stored
                outcome.failure_reason = INSTANCE_EXISTS
                outcome.error = "The instance already exists" + (" with different content." if not same else ".")
                return outcome
            await self._store_new(part, header, key, ctx)
        except InstanceBeingStoredError as e:
            outcome.failure_reason = INSTANCE_BEING_STORED
            outcome.error = e.message
        except InstanceExistsError as e:
            outcome.failure_reason = INSTANCE_EXISTS
            outcome.error = e.message
        except DicomWebError as e:
            if e.status_code in (503, 424):
                raise  # the whole request fails: storage or database is down
            outcome.failure_reason = PROCESSING_FAILURE
            outcome.error = e.message
        return outcome

    async def _store_new(self, part: ReceivedPart, header: InstanceHeader, key: InstanceKey, ctx: StoreContext) -> None:
        reservation = await self._index.reserve(
            ctx.partition_key,
            key,
            sop_class_uid=header.sop_class_uid,
            blob_name_for=lambda w: self.blob_name(ctx.partition, key, w),
        )
        try:
            crash_point("after-reserve")
            frame_index = await asyncio.to_thread(frame_index_of, part.file, header)
            async with self._lease(reservation):
                info = await self._blobs.upload_stream(
                    reservation.blob_name,
                    _spool_chunks(part.file),
                    content_type="application/dicom",
                    metadata={"sha256": part.sha256},  # lets an index rebuilt from the lake skip hashing
                )
            crash_point("after-blob-write")
            metadata = header.metadata
            bulk, pixel = index_fields(header)
            crash_point("before-commit")
            await self._index.commit(
                reservation,
                transfer_syntax_uid=header.transfer_syntax_uid,
                size=info.size,
                sha256=bytes.fromhex(part.sha256),
                blob_etag=info.etag,
                metadata=metadata,
                bulk=bulk,
                pixel_data=pixel,
                replace=ctx.upsert,
                frame_index=frame_index,
                frame_count=header.pixel_data.number_of_frames if header.pixel_data is not None else 0,
            )
            crash_point("after-commit")
        except BaseException:
            await _shielded(self._discard(reservation))
            raise

    @contextlib.asynccontextmanager
    async def _lease(self, reservation: Reservation) -> AsyncIterator[None]:
        """Keep the reservation alive while a long upload runs (the janitor sweeps expired ones)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_RENEW_SECONDS)
                with contextlib.suppress(DicomWebError):
                    await self._index.renew(reservation)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _discard(self, reservation: Reservation) -> None:
        try:
            await self._blobs.delete(reservation.blob_name)
        except DicomWebError:
            logger.warning("could not delete the blob of a failed store; the janitor will", exc_info=False)
        try:
            await self._index.discard(reservation)
        except DicomWebError:
            logger.warning("could not discard a reservation; the janitor will sweep it when its lease expires")


def frame_index_of(file: Seekable, header: InstanceHeader) -> bytes | None:
    """Where each frame of encapsulated pixel data sits (``dicom/frames.py``): item headers only."""
    p = header.pixel_data
    if p is None or not p.encapsulated:
        return None
    eot = next((b for b in header.bulk if b.path == "7FE00001"), None)
    table = (eot.offset, eot.length) if eot is not None and eot.offset is not None and eot.length else None
    return stored_frame_index(file, p.offset, p.length, p.number_of_frames, table)


async def _shielded(coro: Any) -> None:
    """Run cleanup to completion even if the surrounding request is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def index_fields(header: InstanceHeader) -> tuple[dict[str, list[int | None]], dict[str, Any] | None]:
    """Bulk-data offsets and pixel-data geometry as the index records them (stores and the rebuild)."""
    bulk = {b.path: [b.offset, b.length] for b in header.bulk}
    pixel: dict[str, Any] | None = None
    if header.pixel_data is not None:
        p = header.pixel_data
        pixel = {
            "offset": p.offset,
            "length": p.length,
            "encapsulated": p.encapsulated,
            "frames": p.number_of_frames,
            "rows": p.rows,
            "columns": p.columns,
            "samplesPerPixel": p.samples_per_pixel,
            "bitsAllocated": p.bits_allocated,
        }
    return bulk, pixel
