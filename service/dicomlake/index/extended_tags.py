"""Extended query tags in the index (tables of migration 0002, checks of 0005): definitions, the reindex
operation that indexes existing instances, per-instance errors.

Definitions are global (as in the Azure service); values and errors are per instance, so per partition.
Values of every tag not being deleted are indexed by the commit trigger (statuses Adding and Ready);
search uses only Ready + Enabled tags (:meth:`dicomlake.index.search.SearchIndex.extended_tags`).

Adding and starting to delete a tag take the change-feed lock (:data:`CHANGEFEED_LOCK_KEY`) that every
commit takes: a commit either finished before (its instance is below the operation's ``max_watermark``
and the reindex covers it) or starts after and sees the tag (the trigger indexes it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from dicomlake.errors import BadRequestError, ConflictError, DatabaseUnavailableError
from dicomlake.index.instances import CHANGEFEED_LOCK_KEY
from dicomlake.index.operations import DEFAULT_LEASE, finish_operation, insert_operation

REINDEX = "reindex"
#: Most extended query tags (all statuses), as the Azure service.
MAX_TAGS = 128

_DB_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)
_COLUMNS = "tag_key, path, vr, private_creator, level, status, query_status, error_count, operation_id"


def _db_errors(e: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"The index database is unavailable ({type(e).__name__}).")


@dataclass(frozen=True, slots=True)
class NewTag:
    path: str  # 8 upper-case hex digits
    vr: str
    level: str  # Study, Series, Instance
    private_creator: str | None = None


@dataclass(frozen=True, slots=True)
class TagRecord:
    tag_key: int
    path: str
    vr: str
    private_creator: str | None
    level: str
    status: str
    query_status: str
    error_count: int
    operation_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class TagError:
    partition: str
    study_uid: str
    series_uid: str
    sop_uid: str
    error_code: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StepResult:
    """One reindex batch: ``lost`` (the lease belongs to someone else now), ``finished`` (operation
    completed), the watermark range indexed and the number of instances in it."""

    lost: bool = False
    finished: bool = False
    first: int | None = None
    last: int | None = None
    count: int = 0


def _tag(row: asyncpg.Record) -> TagRecord:
    return TagRecord(
        tag_key=row["tag_key"],
        path=row["path"],
        vr=row["vr"],
        private_creator=row["private_creator"],
        level=row["level"],
        status=row["status"],
        query_status=row["query_status"],
        error_count=row["error_count"],
        operation_id=row["operation_id"],
    )


class ExtendedTagIndex:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def _acquire(self) -> Any:
        return self._pool.acquire(timeout=self._acquire_timeout)

    async def add(self, tags: Sequence[NewTag]) -> uuid.UUID:
        """Create the tags (status Adding) and their reindex operation, atomically; 409 if one exists."""
        op_id = uuid.uuid4()
        paths = [t.path for t in tags]
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGEFEED_LOCK_KEY)
                existing = await conn.fetch(
                    "SELECT path FROM extended_query_tags WHERE path = ANY($1::text[]) ORDER BY path", paths
                )
                if existing:
                    raise ConflictError(
                        f"The extended query tag(s) {', '.join(r['path'] for r in existing)} already exist.",
                        code="ExtendedQueryTagsAlreadyExist",
                    )
                count = int(await conn.fetchval("SELECT count(*) FROM extended_query_tags"))
                if count + len(tags) > MAX_TAGS:
                    raise BadRequestError(
                        f"At most {MAX_TAGS} extended query tags may exist; {count} do.",
                        code="ExtendedQueryTagsExceedLimit",
                    )
                high, total = await conn.fetchrow(
                    "SELECT coalesce(max(watermark), 0), count(*) FROM instances WHERE status = 2"
                )
                keys: list[int] = []
                for t in tags:
                    keys.append(
                        await conn.fetchval(
                            "INSERT INTO extended_query_tags (path, vr, private_creator, level, status, operation_id) "
                            "VALUES ($1, $2, $3, $4, 'Adding', $5) RETURNING tag_key",
                            t.path,
                            t.vr,
                            t.private_creator,
                            t.level,
                            op_id,
                        )
                    )
                await insert_operation(
                    conn,
                    REINDEX,
                    op_id=op_id,
                    tag_keys=keys,
                    max_watermark=int(high),
                    total=int(total),
                    resource_locations=[f"extendedquerytags/{p}" for p in paths],
                )
        except asyncpg.UniqueViolationError as e:
            raise ConflictError("The extended query tag already exists.", code="ExtendedQueryTagsAlreadyExist") from e
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return op_id

    async def list_tags(self, *, limit: int, offset: int) -> list[TagRecord]:
        try:
            async with self._acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT {_COLUMNS} FROM extended_query_tags ORDER BY path LIMIT $1 OFFSET $2", limit, offset
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return [_tag(r) for r in rows]

    async def get(self, path: str) -> TagRecord | None:
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM extended_query_tags WHERE path = $1", path)
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _tag(row) if row else None

    async def set_query_status(self, path: str, query_status: str) -> TagRecord | None:
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(
                    f"UPDATE extended_query_tags SET query_status = $2 WHERE path = $1 AND status <> 'Deleting' "
                    f"RETURNING {_COLUMNS}",
                    path,
                    query_status,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _tag(row) if row else None

    async def delete(self, path: str) -> bool:
        """Two steps: mark Deleting under the change-feed lock (from then on no commit indexes it and
        search ignores it), then remove the row; its values and errors go with it (cascade). A crash
        between the steps leaves a Deleting tag that the reindex worker (or a repeated DELETE) removes."""
        try:
            async with self._acquire() as conn:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGEFEED_LOCK_KEY)
                    key = await conn.fetchval(
                        "UPDATE extended_query_tags SET status = 'Deleting' WHERE path = $1 RETURNING tag_key", path
                    )
                if key is None:
                    return False
                await conn.execute("DELETE FROM extended_query_tags WHERE tag_key = $1", key)
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return True

    async def purge_deleting(self) -> int:
        """Finish deletions interrupted between their two steps."""
        try:
            async with self._acquire() as conn:
                tag = await conn.execute("DELETE FROM extended_query_tags WHERE status = 'Deleting'")
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return int(tag.split()[-1])

    async def errors(self, tag_key: int, *, limit: int, offset: int) -> list[TagError]:
        try:
            async with self._acquire() as conn:
                rows = await conn.fetch(
                    "SELECT p.name AS partition, e.study_uid, e.series_uid, e.sop_uid, e.error_code, e.created_at "
                    "FROM extended_query_tag_errors e JOIN partitions p ON p.partition_key = e.partition_key "
                    "WHERE e.tag_key = $1 ORDER BY e.created_at, e.watermark LIMIT $2 OFFSET $3",
                    tag_key,
                    limit,
                    offset,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return [
            TagError(r["partition"], r["study_uid"], r["series_uid"], r["sop_uid"], r["error_code"], r["created_at"])
            for r in rows
        ]

    async def reindex_step(
        self, op_id: uuid.UUID, owner: str, *, batch_size: int, lease: dt.timedelta = DEFAULT_LEASE
    ) -> StepResult:
        """Index the next ``batch_size`` committed instances (keyset on watermark, after the stored
        cursor, up to the operation's ``max_watermark``) for the operation's tags, and store the new
        cursor and progress in the same transaction, only while ``owner`` holds the lease. When no
        instance is left, the tags become Ready and the operation completed."""
        try:
            async with self._acquire() as conn, conn.transaction():
                op = await conn.fetchrow(
                    "SELECT cursor_watermark, max_watermark, tag_keys, done, total FROM operations "
                    "WHERE id = $1 AND lease_owner = $2 AND status = 'running' FOR UPDATE",
                    op_id,
                    owner,
                )
                if op is None:
                    return StepResult(lost=True)
                # Tags deleted meanwhile drop out; the rest cannot be deleted until this commits.
                live = [
                    r["tag_key"]
                    for r in await conn.fetch(
                        "SELECT tag_key FROM extended_query_tags WHERE tag_key = ANY($1::int[]) "
                        "AND status <> 'Deleting' ORDER BY tag_key FOR KEY SHARE",
                        list(op["tag_keys"]),
                    )
                ]
                watermarks: list[int] = []
                if live:
                    watermarks = [
                        r["watermark"]
                        for r in await conn.fetch(
                            "SELECT watermark FROM instances WHERE status = 2 AND watermark > $1 AND watermark <= $2 "
                            "ORDER BY watermark LIMIT $3",
                            op["cursor_watermark"],
                            op["max_watermark"],
                            batch_size,
                        )
                    ]
                if not watermarks:
                    await conn.execute(
                        "UPDATE extended_query_tags SET status = 'Ready', operation_id = NULL "
                        "WHERE tag_key = ANY($1::int[]) AND status = 'Adding'",
                        live,
                    )
                    await finish_operation(conn, op_id, owner=owner, status="completed")
                    return StepResult(finished=True)
                first, last = watermarks[0], watermarks[-1]
                await conn.execute("SELECT dl_eqt_index($1, $2, $3::int[])", first, last, live)
                await conn.execute(
                    "UPDATE operations SET cursor_watermark = $2, done = done + $3, "
                    "percent_complete = CASE WHEN total > 0 THEN least(99, (done + $3) * 100 / total) ELSE 0 END, "
                    "lease_expires_at = now() + $4, updated_at = now() WHERE id = $1",
                    op_id,
                    last,
                    len(watermarks),
                    lease,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return StepResult(first=first, last=last, count=len(watermarks))
