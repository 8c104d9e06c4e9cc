"""Rebuild the index from the lake alone (``python -m dicomlake reindex --from-lake``).

Not to be confused with the extended-query-tag reindex. When the database is lost, every committed
instance can be recovered from the data contract (``docs/data-contract.md``):

- the blob name ``{partition}/{study}/{series}/{sop}_{watermark}.dcm`` gives the partition, the three
  UIDs and the version (watermark);
- the file's header, read with ranged reads of 64 KiB pages (only the pages the header parser touches:
  Pixel Data and other bulk values are skipped by offset, never downloaded), gives the metadata, the
  bulk-data offsets, the pixel-data geometry and the frame index;
- the SHA-256 of the stored bytes comes from the blob's ``sha256`` metadata, written at store time;
  files written before that metadata existed are hashed by streaming them once (the only full read).

Rows go through the normal commit path (``InstanceIndex.commit``): a pending row with the recovered
watermark, then the commit, which maintains the search tables (triggers), the frame index and appends a
change-feed ``create`` entry. When a SOP has several versions in the lake (a replaced instance whose old
file was not yet deleted) the **highest watermark wins**; the older files are queued for deletion. The
watermark sequence is advanced past the highest watermark found before anything is inserted, so stores
accepted while the rebuild runs never reuse a recovered version.

Resumable and idempotent: an instance already committed with the same watermark is skipped without
reading its file, so an interrupted rebuild continues where it stopped when run again. A file that
cannot be parsed is reported and skipped (it stays in the lake). Progress is reported through a
callback (the CLI draws a progress bar).

Both entry points run the same function, :func:`run_rebuild_operation`, recorded as a long-running
operation of type ``rebuild`` (``GET /v2/operations/{id}``: percentComplete and results):

- ``POST /v2/operations/rebuild-from-lake`` (:func:`start_rebuild` without owner) creates it
  ``notStarted``; the :class:`RebuildWorker` of any replica claims it through PostgreSQL with a lease;
- ``python -m dicomlake reindex --from-lake`` creates it already ``running`` and leased to itself.

While it runs, the worker writes progress and renews the lease every ``report_interval``; a worker that
dies stops renewing, and once the lease has passed another replica's worker claims the operation and runs
the rebuild again, which skips what was already indexed. Only one rebuild is active at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import hashlib
import io
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, cast

import asyncpg

from dicomlake.dicom.header import InstanceHeader, read_instance_header
from dicomlake.errors import (
    ConflictError,
    DatabaseUnavailableError,
    DependencyUnavailableError,
    DicomWebError,
    InvalidInstanceError,
)
from dicomlake.features.store import frame_index_of, index_fields
from dicomlake.index.instances import InstanceIndex, InstanceKey, Reservation
from dicomlake.index.operations import DEFAULT_LEASE, OperationStore, insert_operation
from dicomlake.jobs.loop import run_until_stopped
from dicomlake.storage.blob_store import AzureBlobStore, BlobInfo
from dicomlake.storage.paths import LakeLayout

logger = logging.getLogger(__name__)
PAGE = 64 * 1024
#: Operation type of a rebuild from the lake (``GET /v2/operations/{id}``).
REBUILD = "rebuild"
#: How many refused files an operation's results name (the CLI prints them too).
MAX_LISTED_FAILURES = 20
_ACTIVE_LOCK = "dicomlake:rebuild-from-lake"
_NAME = re.compile(r"^(?P<study>[0-9.]+)/(?P<series>[0-9.]+)/(?P<sop>[0-9.]+)_(?P<watermark>[0-9]+)\.dcm$")


@dataclass(frozen=True, slots=True)
class LakeFile:
    partition: str
    study: str
    series: str
    sop: str
    watermark: int
    blob: BlobInfo


@dataclass(slots=True)
class RebuildProgress:
    total: int = 0
    done: int = 0
    rebuilt: int = 0
    skipped_existing: int = 0
    superseded: int = 0
    failed: int = 0
    bytes_read: int = 0
    bytes_in_files: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else int(100 * self.done / self.total)


def parse_blob_name(layout: LakeLayout, name: str) -> tuple[str, str, str, str, int] | None:
    """(partition, study, series, sop, watermark) of an instance file; None for anything else."""
    root = layout.service_root
    if not name.startswith(root):
        return None
    partition, _, rest = name[len(root) :].partition("/")
    if not partition or partition == "healthCheck":
        return None
    m = _NAME.match(rest)
    if m is None:
        return None
    return partition, m["study"], m["series"], m["sop"], int(m["watermark"])


class RangedBlobFile(io.RawIOBase):
    """A read-only, seekable file over a blob that downloads only the 64 KiB pages actually read.

    Used from a worker thread: each page is fetched on the event loop with an ETag condition, so a
    file changed during the rebuild fails instead of mixing versions."""

    def __init__(self, blobs: AzureBlobStore, info: BlobInfo, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._blobs = blobs
        self._info = info
        self._loop = loop
        self._pos = 0
        self._pages: dict[int, bytes] = {}
        self.bytes_read = 0
        self.metadata: dict[str, str] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._info.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _page(self, index: int) -> bytes:
        page = self._pages.get(index)
        if page is None:
            offset = index * PAGE
            length = min(PAGE, self._info.size - offset)
            future = asyncio.run_coroutine_threadsafe(self._fetch(offset, length), self._loop)
            page = future.result()
            self._pages[index] = page
            self.bytes_read += len(page)
        return page

    async def _fetch(self, offset: int, length: int) -> bytes:
        download = await self._blobs.open_download(self._info.name, offset=offset, length=length, etag=self._info.etag)
        self.metadata = download.metadata
        return await download.read_all()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self._info.size - self._pos))
        written = 0
        while written < n:
            index, within = divmod(self._pos + written, PAGE)
            page = self._page(index)
            chunk = page[within : within + n - written]
            if not chunk:
                break
            view[written : written + len(chunk)] = chunk
            written += len(chunk)
        self._pos += written
        return written


def _frame_index(file: RangedBlobFile, header: InstanceHeader) -> bytes | None:
    """The frame index exactly as a store computes it (item headers only: a few ranged pages)."""
    return frame_index_of(cast(IO[bytes], file), header)


class LakeRebuild:
    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: AzureBlobStore,
        layout: LakeLayout,
        *,
        concurrency: int = 8,
        on_progress: Callable[[RebuildProgress], None] | None = None,
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._layout = layout
        self._index = InstanceIndex(pool)
        self._concurrency = concurrency
        self._on_progress = on_progress or (lambda _: None)
        self.progress = RebuildProgress()
        self._executor = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="rebuild")

    async def list_files(self, partition: str | None) -> list[LakeFile]:
        prefix = self._layout.partition_root(partition) if partition else self._layout.service_root
        files: list[LakeFile] = []
        async for info in self._blobs.list_blobs(prefix):
            parsed = parse_blob_name(self._layout, info.name)
            if parsed is not None:
                files.append(LakeFile(*parsed, blob=info))
        return files

    async def run(self, partition: str | None = None) -> RebuildProgress:
        try:
            return await self._run(partition)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, partition: str | None) -> RebuildProgress:
        files = await self.list_files(partition)
        latest: dict[tuple[str, str, str, str], LakeFile] = {}
        older: list[LakeFile] = []
        for f in files:
            key = (f.partition, f.study, f.series, f.sop)
            current = latest.get(key)
            if current is None or f.watermark > current.watermark:
                if current is not None:
                    older.append(current)
                latest[key] = f
            else:
                older.append(f)
        progress = self.progress
        progress.total = len(latest)
        progress.superseded = len(older)
        if files:
            await self._advance_watermark(max(f.watermark for f in files))
        existing = await self._existing_watermarks()
        partitions: dict[str, int] = {}
        for name in sorted({f.partition for f in latest.values()}):
            partition_key = await self._index.partition_key(name, create=True)
            assert partition_key is not None
            partitions[name] = partition_key
        await self._queue_superseded(older)
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one(f: LakeFile) -> None:
            async with semaphore:
                if f.watermark in existing:
                    progress.skipped_existing += 1
                else:
                    await self._rebuild_one(f, partitions[f.partition])
                progress.done += 1
                self._on_progress(progress)

        # Watermark order: the rebuilt change feed lists creates in the order instances were first stored.
        ordered = sorted(latest.values(), key=lambda f: f.watermark)
        for start in range(0, len(ordered), 256):
            await asyncio.gather(*(one(f) for f in ordered[start : start + 256]))
        return progress

    async def _advance_watermark(self, highest: int) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "SELECT setval('instance_watermark_seq', GREATEST($1::bigint, "
                "(SELECT last_value FROM instance_watermark_seq)))",
                highest,
            )

    async def _existing_watermarks(self) -> set[int]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT watermark FROM instances WHERE status = 2")
        return {int(r["watermark"]) for r in rows}

    async def _queue_superseded(self, older: list[LakeFile]) -> None:
        if not older:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            queued = {
                r["blob_name"]
                for r in await conn.fetch(
                    "SELECT blob_name FROM deletion_queue WHERE blob_name = ANY($1::text[])",
                    [f.blob.name for f in older],
                )
            }
            await conn.executemany(
                "INSERT INTO deletion_queue (blob_name, reason) VALUES ($1, 'rebuild: superseded version')",
                [(f.blob.name,) for f in older if f.blob.name not in queued],
            )

    async def _rebuild_one(self, f: LakeFile, partition_key: int) -> None:
        progress = self.progress
        loop = asyncio.get_running_loop()
        file = RangedBlobFile(self._blobs, f.blob, loop)
        try:
            header = await self._in_thread(read_instance_header, cast(IO[bytes], file), f.blob.size)
            if (header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid) != (
                f.study,
                f.series,
                f.sop,
            ):
                raise InvalidInstanceError("the UIDs in the file differ from those in its name")
            frame_index = await self._in_thread(_frame_index, file, header)
            sha256 = await self._sha256(f, file.metadata)
        except (InvalidInstanceError, DicomWebError) as e:
            progress.failed += 1
            progress.failures.append(f"{f.blob.name}: {e.code}")
            logger.warning("lake file skipped by the rebuild", extra={"code": e.code})
            return
        finally:
            progress.bytes_read += file.bytes_read
            progress.bytes_in_files += f.blob.size
        key = InstanceKey(f.partition, f.study, f.series, f.sop)
        reservation = Reservation(f.watermark, partition_key, key, f.blob.name)
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO instances (watermark, partition_key, study_uid, series_uid, sop_uid, status, "
                "sop_class_uid, blob_name, lease_expires_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, now() + "
                "interval '10 minutes') ON CONFLICT (watermark) DO NOTHING",
                f.watermark,
                partition_key,
                f.study,
                f.series,
                f.sop,
                header.sop_class_uid,
                f.blob.name,
            )
        bulk, pixel = index_fields(header)
        kwargs: dict[str, Any] = {}
        if frame_index is not None:
            kwargs = {
                "frame_index": frame_index,
                "frame_count": header.pixel_data.number_of_frames if header.pixel_data else 0,
            }
        try:
            await self._index.commit(
                reservation,
                transfer_syntax_uid=header.transfer_syntax_uid,
                size=f.blob.size,
                sha256=sha256,
                blob_etag=f.blob.etag,
                metadata=header.metadata,
                bulk=bulk,
                pixel_data=pixel,
                replace=True,
                **kwargs,
            )
        except DicomWebError as e:
            progress.failed += 1
            progress.failures.append(f"{f.blob.name}: {e.code}")
            await self._index.discard(reservation)
            return
        progress.rebuilt += 1

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Parsers block on page fetches that run on the event loop, and those may need the loop's
        # default executor (name resolution): parsing therefore has its own threads, or it deadlocks.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _sha256(self, f: LakeFile, metadata: dict[str, str]) -> bytes:
        recorded = metadata.get("sha256", "")
        if re.fullmatch(r"[0-9a-f]{64}", recorded):
            return bytes.fromhex(recorded)
        digest = hashlib.sha256()
        download = await self._blobs.open_download(f.blob.name, etag=f.blob.etag)
        async for chunk in download.chunks():
            digest.update(chunk)
        self.progress.bytes_read += f.blob.size
        return digest.digest()


def progress_results(progress: RebuildProgress, partition: str | None) -> dict[str, Any]:
    """What ``GET /v2/operations/{id}`` shows under ``results`` (while running and at the end)."""
    return {
        "partition": partition,
        "filesFound": progress.total,
        "instancesIndexed": progress.rebuilt,
        "instancesSkipped": progress.skipped_existing,
        "filesRefused": progress.failed,
        "olderVersionsQueuedForDeletion": progress.superseded,
        "bytesRead": progress.bytes_read,
        "bytesInFiles": progress.bytes_in_files,
        "refusedFiles": progress.failures[:MAX_LISTED_FAILURES],
    }


async def rebuild_from_lake(
    pool: asyncpg.Pool,
    blobs: AzureBlobStore,
    layout: LakeLayout,
    *,
    partition: str | None = None,
    on_progress: Callable[[RebuildProgress], None] | None = None,
    concurrency: int = 8,
) -> RebuildProgress:
    """Rebuild the index of ``partition`` (default: every partition) from the lake; see the module doc."""
    return await LakeRebuild(pool, blobs, layout, concurrency=concurrency, on_progress=on_progress).run(partition)


async def start_rebuild(
    pool: asyncpg.Pool, partition: str | None, *, owner: str | None = None, lease: dt.timedelta = DEFAULT_LEASE
) -> uuid.UUID:
    """Create the rebuild operation: ``notStarted`` for any replica's worker, or (with ``owner``) already
    running and leased to the caller. Raises :class:`ConflictError` while another rebuild is active (not
    started, or running with a live lease); one whose worker died (lease passed) is marked failed and
    replaced, since the new rebuild redoes its work anyway."""
    try:
        async with pool.acquire(timeout=5.0) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _ACTIVE_LOCK)
            active = await conn.fetch(
                "SELECT id, lease_expires_at IS NOT NULL AND lease_expires_at < now() AS abandoned FROM operations "
                "WHERE type = $1 AND status IN ('notStarted', 'running') FOR UPDATE",
                REBUILD,
            )
            live = [r["id"] for r in active if not r["abandoned"]]
            if live:
                raise ConflictError(
                    f"A rebuild from the lake is already in progress (operation {live[0]}).",
                    code="OperationAlreadyRunning",
                )
            await conn.execute(
                "UPDATE operations SET status = 'failed', error = 'abandoned: its worker stopped; replaced by a new "
                "rebuild', lease_owner = NULL, lease_expires_at = NULL, updated_at = now() WHERE id = ANY($1::uuid[])",
                [r["id"] for r in active],
            )
            return await insert_operation(
                conn, REBUILD, owner=owner, lease=lease, results=progress_results(RebuildProgress(), partition)
            )
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
        raise DatabaseUnavailableError(f"The index database is unavailable ({type(e).__name__}).") from e


async def run_rebuild_operation(
    pool: asyncpg.Pool,
    blobs: AzureBlobStore,
    layout: LakeLayout,
    op_id: uuid.UUID,
    owner: str,
    *,
    partition: str | None,
    on_progress: Callable[[RebuildProgress], None] | None = None,
    lease: dt.timedelta = DEFAULT_LEASE,
    report_interval: float = 1.0,
    concurrency: int = 8,
) -> RebuildProgress | None:
    """Run the rebuild for operation ``op_id`` held by ``owner``: progress and results are written and
    the lease renewed every ``report_interval``; the operation ends ``completed`` (files that could not
    be parsed are counted in the results) or ``failed`` (the rebuild itself raised). Returns the progress,
    or None when the lease was lost to another worker (the rebuild is then stopped)."""
    operations = OperationStore(pool)
    progress = RebuildProgress()

    def seen(p: RebuildProgress) -> None:
        nonlocal progress
        progress = p
        if on_progress is not None:
            on_progress(p)

    task = asyncio.create_task(
        rebuild_from_lake(pool, blobs, layout, partition=partition, on_progress=seen, concurrency=concurrency)
    )
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=report_interval)
            if done:
                break
            try:
                held = await operations.progress(
                    op_id,
                    owner=owner,
                    done=progress.done,
                    total=progress.total,
                    lease=lease,
                    results=progress_results(progress, partition),
                )
            except DatabaseUnavailableError:
                continue  # the rebuild meets the outage too; if the lease passes meanwhile, the next write says so
            if not held:
                logger.warning("rebuild operation taken over by another worker", extra={"operation": str(op_id)})
                return None
        try:
            final = task.result()
        except DependencyUnavailableError:
            # Storage or database down: not finished. The lease passes and a worker (this one's next pass,
            # or another replica's) claims the operation again and resumes.
            raise
        except Exception as e:
            error = e.message if isinstance(e, DicomWebError) else f"The rebuild stopped ({type(e).__name__})."
            logger.warning("rebuild operation failed", extra={"operation": str(op_id), "error": type(e).__name__})
            await operations.finish(
                op_id, owner=owner, status="failed", error=error, results=progress_results(progress, partition)
            )
            return progress
        await operations.finish(op_id, owner=owner, status="completed", results=progress_results(final, partition))
        logger.info(
            "rebuild operation completed",
            extra={"operation": str(op_id), "indexed": final.rebuilt, "refused": final.failed},
        )
        return final
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DicomWebError):
                await task


class RebuildWorker:
    """Runs ``rebuild`` operations in this replica (unless ``DICOM_OPERATIONS_WORKER=false``): claims one
    through PostgreSQL (``FOR UPDATE SKIP LOCKED`` and a lease), including one whose worker died."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: AzureBlobStore,
        layout: LakeLayout,
        *,
        owner: str,
        lease: dt.timedelta = DEFAULT_LEASE,
        interval: float = 5.0,
        report_interval: float = 1.0,
    ) -> None:
        self.owner = owner
        self.lease = lease
        self.interval = interval
        self.report_interval = report_interval
        self._pool = pool
        self._blobs = blobs
        self._layout = layout
        self._operations = OperationStore(pool)
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Look for work now (a rebuild was just requested on this replica)."""
        self._wake.set()

    async def run_once(self) -> int:
        ran = 0
        while (op := await self._operations.claim((REBUILD,), self.owner, lease=self.lease)) is not None:
            partition = op.results.get("partition") if isinstance(op.results, dict) else None
            logger.info("rebuild operation claimed", extra={"operation": str(op.id), "resumed": op.done > 0})
            await run_rebuild_operation(
                self._pool,
                self._blobs,
                self._layout,
                op.id,
                self.owner,
                partition=partition if isinstance(partition, str) else None,
                lease=self.lease,
                report_interval=self.report_interval,
            )
            ran += 1
        return ran

    async def run_forever(self, stop: asyncio.Event) -> None:
        await run_until_stopped(self.run_once, stop=stop, wake=self._wake, interval=self.interval, name="rebuild")
