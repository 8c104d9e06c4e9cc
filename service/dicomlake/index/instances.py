"""Instance index: the two-phase store protocol, lookups for retrieve, and the change feed append.

States: a store *reserves* a pending row (invisible to search and retrieve; unique per SOP among
pending rows, so a concurrent store of the same SOP on any replica gets 45071), writes the blob, then
*commits*: in one transaction the row becomes committed and a change-feed row is appended; an
instance it replaces (PUT) is removed and its blob queued for deletion. A failed store *discards* its
reservation; a crashed one is swept by the janitor when its lease expires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from dicomlake.errors import ConflictError, DatabaseUnavailableError, NotFoundError
from dicomlake.storage.paths import LakeLayout

#: Taken (transaction-scoped) by every transaction that appends to the change feed, so sequence
#: numbers are handed out in commit order.
CHANGEFEED_LOCK_KEY = 0x6368616E6765
PENDING_LEASE = dt.timedelta(minutes=10)


class InstanceBeingStoredError(ConflictError):
    code = "InstanceBeingStored"


class InstanceExistsError(ConflictError):
    code = "InstanceExists"


@dataclass(frozen=True, slots=True)
class InstanceKey:
    partition: str
    study_uid: str
    series_uid: str
    sop_uid: str


@dataclass(frozen=True, slots=True)
class Reservation:
    watermark: int
    partition_key: int
    key: InstanceKey
    blob_name: str


@dataclass(frozen=True, slots=True)
class StoredInstance:
    watermark: int
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None
    blob_name: str
    size: int
    sha256: bytes
    blob_etag: str | None
    bulk: dict[str, list[int | None]]
    pixel_data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    json_text: str  # DICOM JSON as stored (JSONB rendered as text); BulkDataURIs relative to the instance
    watermark: int
    study_uid: str
    series_uid: str
    sop_uid: str


def _db_errors(e: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"The index database is unavailable ({type(e).__name__}).")


_DB_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)
_COLUMNS = (
    "watermark, study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax_uid, blob_name, size, sha256, "
    "blob_etag, bulk, pixel_data"
)


def _stored(row: asyncpg.Record) -> StoredInstance:
    return StoredInstance(
        watermark=row["watermark"],
        study_uid=row["study_uid"],
        series_uid=row["series_uid"],
        sop_uid=row["sop_uid"],
        sop_class_uid=row["sop_class_uid"],
        transfer_syntax_uid=row["transfer_syntax_uid"],
        blob_name=row["blob_name"],
        size=row["size"],
        sha256=bytes(row["sha256"]),
        blob_etag=row["blob_etag"],
        bulk=orjson.loads(row["bulk"]) if row["bulk"] else {},
        pixel_data=orjson.loads(row["pixel_data"]) if row["pixel_data"] else None,
    )


def _scope(
    partition_key: int, study_uid: str, series_uid: str | None, sop_uid: str | None
) -> tuple[list[str], list[Any]]:
    """WHERE conditions and arguments for the committed instances of a study, series or instance."""
    conditions = ["partition_key = $1", "study_uid = $2", "status = 2"]
    args: list[Any] = [partition_key, study_uid]
    if series_uid is not None:
        args.append(series_uid)
        conditions.append(f"series_uid = ${len(args)}")
    if sop_uid is not None:
        args.append(sop_uid)
        conditions.append(f"sop_uid = ${len(args)}")
    return conditions, args


class InstanceIndex:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def _acquire(self) -> Any:
        return self._pool.acquire(timeout=self._acquire_timeout)

    # --- partitions ------------------------------------------------------------------------------
    async def partition_key(self, name: str, *, create: bool) -> int | None:
        try:
            async with self._acquire() as conn:
                key = await conn.fetchval("SELECT partition_key FROM partitions WHERE name = $1", name)
                if key is None and create:
                    key = await conn.fetchval(
                        "INSERT INTO partitions (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
                        "RETURNING partition_key",
                        name,
                    )
                return int(key) if key is not None else None
        except _DB_DOWN as e:
            raise _db_errors(e) from e

    # --- store -----------------------------------------------------------------------------------
    async def get_committed(self, partition_key: int, key: InstanceKey) -> StoredInstance | None:
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM instances WHERE partition_key = $1 AND study_uid = $2 "
                    "AND series_uid = $3 AND sop_uid = $4 AND status = 2",
                    partition_key,
                    key.study_uid,
                    key.series_uid,
                    key.sop_uid,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _stored(row) if row else None

    async def reserve(
        self, partition_key: int, key: InstanceKey, *, sop_class_uid: str, blob_name_for: Any
    ) -> Reservation:
        """Insert a pending row; raise InstanceBeingStoredError if the same SOP is pending elsewhere."""
        try:
            async with self._acquire() as conn:
                watermark = int(await conn.fetchval("SELECT nextval('instance_watermark_seq')"))
                blob_name = str(blob_name_for(watermark))
                try:
                    await conn.execute(
                        "INSERT INTO instances (watermark, partition_key, study_uid, series_uid, sop_uid, status, "
                        "sop_class_uid, blob_name, lease_expires_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, now() + $8)",
                        watermark,
                        partition_key,
                        key.study_uid,
                        key.series_uid,
                        key.sop_uid,
                        sop_class_uid,
                        blob_name,
                        PENDING_LEASE,
                    )
                except asyncpg.UniqueViolationError as e:
                    raise InstanceBeingStoredError("The same instance is being stored by another request.") from e
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return Reservation(watermark, partition_key, key, blob_name)

    async def renew(self, reservation: Reservation) -> None:
        try:
            async with self._acquire() as conn:
                await conn.execute(
                    "UPDATE instances SET lease_expires_at = now() + $2 WHERE watermark = $1 AND status = 1",
                    reservation.watermark,
                    PENDING_LEASE,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e

    async def commit(
        self,
        reservation: Reservation,
        *,
        transfer_syntax_uid: str,
        size: int,
        sha256: bytes,
        blob_etag: str,
        metadata: dict[str, Any],
        bulk: dict[str, list[int | None]],
        pixel_data: dict[str, Any] | None,
        replace: bool,
        frame_index: bytes | None = None,
        frame_count: int = 0,
    ) -> bool:
        """Make the reserved instance visible and append the change feed, atomically.

        With ``replace`` an existing committed instance is removed and its blob queued for deletion
        (action ``update``); without, an existing one raises InstanceExistsError. Returns True if an
        instance was replaced.
        """
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGEFEED_LOCK_KEY)
                mine = await conn.fetchval(
                    "SELECT status FROM instances WHERE watermark = $1 FOR UPDATE", reservation.watermark
                )
                if mine != 1:
                    raise ConflictError("The reservation for this instance expired before it was committed.")
                key = reservation.key
                old = await conn.fetchrow(
                    "DELETE FROM instances WHERE partition_key = $1 AND study_uid = $2 AND series_uid = $3 "
                    "AND sop_uid = $4 AND status = 2 AND $5 RETURNING watermark, blob_name",
                    reservation.partition_key,
                    key.study_uid,
                    key.series_uid,
                    key.sop_uid,
                    replace,
                )
                if old is not None:
                    await conn.execute(
                        "INSERT INTO deletion_queue (blob_name, reason) VALUES ($1, 'replaced')", old["blob_name"]
                    )
                    # Its cached thumbnail, if one was rendered (deleting a missing blob succeeds).
                    await conn.execute(
                        "INSERT INTO deletion_queue (blob_name, reason) VALUES ($1, 'replaced')",
                        LakeLayout.thumbnail_blob(old["blob_name"]),
                    )
                try:
                    await conn.execute(
                        "UPDATE instances SET status = 2, transfer_syntax_uid = $2, size = $3, sha256 = $4, "
                        "blob_etag = $5, metadata = $6::jsonb, bulk = $7::jsonb, pixel_data = $8::jsonb, "
                        "committed_at = now(), lease_expires_at = NULL WHERE watermark = $1",
                        reservation.watermark,
                        transfer_syntax_uid,
                        size,
                        sha256,
                        blob_etag,
                        orjson.dumps(metadata).decode(),
                        orjson.dumps(bulk).decode(),
                        orjson.dumps(pixel_data).decode() if pixel_data is not None else None,
                    )
                except asyncpg.UniqueViolationError as e:
                    raise InstanceExistsError("The instance already exists.") from e
                if frame_index is not None:
                    await conn.execute(
                        "INSERT INTO instance_frames (watermark, frame_count, fragments) VALUES ($1, $2, $3)",
                        reservation.watermark,
                        frame_count,
                        frame_index,
                    )
                await conn.execute(
                    "INSERT INTO changefeed (sequence, partition_key, study_uid, series_uid, sop_uid, action, "
                    "watermark, blob_name) VALUES (nextval('changefeed_seq'), $1, $2, $3, $4, $5, $6, $7)",
                    reservation.partition_key,
                    key.study_uid,
                    key.series_uid,
                    key.sop_uid,
                    "update" if old is not None else "create",
                    reservation.watermark,
                    reservation.blob_name,
                )
                return old is not None
        except _DB_DOWN as e:
            raise _db_errors(e) from e

    async def discard(self, reservation: Reservation) -> None:
        """Remove a pending reservation and queue its blob for deletion (idempotent)."""
        try:
            async with self._acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "DELETE FROM instances WHERE watermark = $1 AND status = 1 RETURNING blob_name",
                    reservation.watermark,
                )
                if row is not None:
                    await conn.execute(
                        "INSERT INTO deletion_queue (blob_name, reason) VALUES ($1, 'discarded')", row["blob_name"]
                    )
        except _DB_DOWN as e:
            raise _db_errors(e) from e

    # --- delete ----------------------------------------------------------------------------------
    async def delete(
        self, partition_key: int, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> int:
        """Remove the committed instances of a study, series or instance in one transaction: their
        blobs go to the deletion queue and one change-feed ``delete`` row per instance is appended
        under the change-feed lock (so sequences stay in commit order). Pending rows (stores in
        flight) are not touched: they commit afterwards as new instances. Returns how many were
        deleted."""
        conditions, args = _scope(partition_key, study_uid, series_uid, sop_uid)
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGEFEED_LOCK_KEY)
                rows = await conn.fetch(
                    f"WITH gone AS (DELETE FROM instances WHERE {' AND '.join(conditions)} "
                    "RETURNING watermark, study_uid, series_uid, sop_uid, blob_name), "
                    "queued AS (INSERT INTO deletion_queue (blob_name, reason) SELECT blob_name, 'deleted' FROM gone) "
                    "INSERT INTO changefeed (sequence, partition_key, study_uid, series_uid, sop_uid, action, "
                    "watermark, blob_name) SELECT nextval('changefeed_seq'), $1, g.study_uid, g.series_uid, "
                    "g.sop_uid, 'delete', g.watermark, g.blob_name FROM (SELECT * FROM gone ORDER BY watermark) g "
                    "RETURNING sequence",
                    *args,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return len(rows)

    # --- retrieve --------------------------------------------------------------------------------
    async def find(
        self, partition_key: int, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[StoredInstance]:
        conditions, args = _scope(partition_key, study_uid, series_uid, sop_uid)
        try:
            async with self._acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT {_COLUMNS} FROM instances WHERE {' AND '.join(conditions)} ORDER BY series_uid, watermark",
                    *args,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return [_stored(r) for r in rows]

    async def metadata(
        self, partition_key: int, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceMetadata]:
        """The stored DICOM JSON of each instance, in retrieve order."""
        conditions, args = _scope(partition_key, study_uid, series_uid, sop_uid)
        try:
            async with self._acquire() as conn:
                rows: Sequence[asyncpg.Record] = await conn.fetch(
                    f"SELECT metadata::text AS m, watermark, study_uid, series_uid, sop_uid FROM instances "
                    f"WHERE {' AND '.join(conditions)} ORDER BY series_uid, watermark",
                    *args,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return [InstanceMetadata(r["m"], r["watermark"], r["study_uid"], r["series_uid"], r["sop_uid"]) for r in rows]


async def frame_index(pool: asyncpg.Pool, watermark: int) -> bytes | None:
    """The packed frame index stored at commit (``dicom/frames.py``), or None (native pixel data, or an
    instance stored before migration 0004 or whose frame boundaries were unknown)."""
    try:
        async with pool.acquire(timeout=5.0) as conn:
            value = await conn.fetchval("SELECT fragments FROM instance_frames WHERE watermark = $1", watermark)
    except _DB_DOWN as e:
        raise _db_errors(e) from e
    return bytes(value) if value is not None else None


async def instance_metadata(pool: asyncpg.Pool, watermark: int) -> dict[str, Any]:
    """The stored DICOM JSON of one instance version ({} if gone)."""
    try:
        async with pool.acquire(timeout=5.0) as conn:
            text = await conn.fetchval("SELECT metadata::text FROM instances WHERE watermark = $1", watermark)
    except _DB_DOWN as e:
        raise _db_errors(e) from e
    return dict(orjson.loads(text)) if text else {}


def not_found(level: str) -> NotFoundError:
    return NotFoundError(f"The requested {level} was not found.", code=f"{level.capitalize()}NotFound")
