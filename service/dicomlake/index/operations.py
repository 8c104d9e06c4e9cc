"""Long-running operations, coordinated through PostgreSQL (table ``operations``, migrations 0002/0005).

Generic: an operation has a ``type`` (``reindex`` for extended query tags; any other job may add its
own), a status (``notStarted``, ``running``, ``completed``, ``failed``, ``canceled``), progress
(``done``/``total`` -> percentComplete) and optional resource locations (paths relative to ``/v2``).

Any replica may run an operation: a worker *claims* it by writing its own id into ``lease_owner`` with a
lease (``lease_expires_at``), renews the lease with every progress update, and writes progress only
while it still owns the lease (checked in the same statement). A worker that crashes stops renewing;
once the lease has passed, another replica's :meth:`OperationStore.claim` takes the operation over and
resumes from what the last successful update stored (e.g. ``cursor_watermark``).

Another job reports through the same table and ``GET /v2/operations/{id}``::

    store = OperationStore(pool)
    op = await store.create("rebuild", owner=worker_id, total=n)         # status running, leased to me
    await store.progress(op, owner=worker_id, done=k)                     # renews the lease
    await store.finish(op, owner=worker_id, status="completed")          # or "failed", error=...
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson

from dicomlake.errors import DatabaseUnavailableError

Status = Literal["notStarted", "running", "completed", "failed", "canceled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled"})
DEFAULT_LEASE = dt.timedelta(seconds=60)

_DB_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)
_COLUMNS = (
    "id, type, status, percent_complete, tag_keys, cursor_watermark, max_watermark, total, done, lease_owner, "
    "lease_expires_at, error, resource_locations, results::text AS results, created_at, updated_at"
)


def _db_errors(e: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"The index database is unavailable ({type(e).__name__}).")


@dataclass(frozen=True, slots=True)
class Operation:
    id: uuid.UUID
    type: str
    status: str
    percent_complete: int
    tag_keys: tuple[int, ...]
    cursor_watermark: int
    max_watermark: int
    total: int
    done: int
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    error: str | None
    resource_locations: tuple[str, ...]
    results: Any
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _operation(row: asyncpg.Record) -> Operation:
    return Operation(
        id=row["id"],
        type=row["type"],
        status=row["status"],
        percent_complete=row["percent_complete"],
        tag_keys=tuple(row["tag_keys"]),
        cursor_watermark=row["cursor_watermark"],
        max_watermark=row["max_watermark"],
        total=row["total"],
        done=row["done"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        error=row["error"],
        resource_locations=tuple(row["resource_locations"]),
        results=orjson.loads(row["results"]) if row["results"] else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def percent(done: int, total: int) -> int:
    """0-99 while running (100 only once completed)."""
    if total <= 0:
        return 0
    return max(0, min(99, done * 100 // total))


async def insert_operation(
    conn: asyncpg.Connection | Any,
    type: str,
    *,
    owner: str | None = None,
    lease: dt.timedelta = DEFAULT_LEASE,
    total: int = 0,
    tag_keys: Sequence[int] = (),
    max_watermark: int = 0,
    resource_locations: Sequence[str] = (),
    op_id: uuid.UUID | None = None,
    results: Any = None,
) -> uuid.UUID:
    """Insert an operation on ``conn`` (inside the caller's transaction). With ``owner`` it starts
    ``running`` and leased to that worker; without, ``notStarted`` for any worker to claim."""
    op_id = op_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO operations (id, type, status, tag_keys, max_watermark, total, resource_locations, lease_owner, "
        "lease_expires_at, results) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8::text IS NULL THEN NULL "
        "ELSE now() + $9::interval END, $10::jsonb)",
        op_id,
        type,
        "running" if owner is not None else "notStarted",
        list(tag_keys),
        max_watermark,
        total,
        list(resource_locations),
        owner,
        lease,
        orjson.dumps(results).decode() if results is not None else None,
    )
    return op_id


class OperationStore:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def _acquire(self) -> Any:
        return self._pool.acquire(timeout=self._acquire_timeout)

    async def create(
        self,
        type: str,
        *,
        owner: str | None = None,
        lease: dt.timedelta = DEFAULT_LEASE,
        total: int = 0,
        resource_locations: Sequence[str] = (),
        results: Any = None,
    ) -> uuid.UUID:
        try:
            async with self._acquire() as conn:
                return await insert_operation(
                    conn,
                    type,
                    owner=owner,
                    lease=lease,
                    total=total,
                    resource_locations=resource_locations,
                    results=results,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e

    async def get(self, op_id: uuid.UUID) -> Operation | None:
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM operations WHERE id = $1", op_id)
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _operation(row) if row else None

    async def claim(self, types: Sequence[str], owner: str, *, lease: dt.timedelta = DEFAULT_LEASE) -> Operation | None:
        """Take the oldest runnable operation of ``types`` that nobody else holds (never started, whose
        lease has expired: its worker crashed or stopped, or already ``owner``'s); None when there is none."""
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(
                    "UPDATE operations SET status = 'running', lease_owner = $2, lease_expires_at = now() + $3, "
                    "updated_at = now() WHERE id = (SELECT id FROM operations WHERE status IN ('notStarted', 'running') "
                    "AND type = ANY($1::text[]) AND (lease_expires_at IS NULL OR lease_expires_at < now() OR lease_owner = $2) "
                    f"ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING {_COLUMNS}",
                    list(types),
                    owner,
                    lease,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _operation(row) if row else None

    async def progress(
        self,
        op_id: uuid.UUID,
        *,
        owner: str,
        done: int,
        total: int | None = None,
        lease: dt.timedelta = DEFAULT_LEASE,
        results: Any = None,
    ) -> bool:
        """Record progress (and, when given, results so far) and renew the lease; False when ``owner`` no
        longer holds the operation."""
        try:
            async with self._acquire() as conn:
                tag = await conn.execute(
                    "UPDATE operations SET done = $3::bigint, total = coalesce($4::bigint, total), "
                    "percent_complete = CASE WHEN coalesce($4::bigint, total) > 0 "
                    "THEN least(99, $3::bigint * 100 / coalesce($4::bigint, total)) ELSE 0 END, "
                    "lease_expires_at = now() + $5, updated_at = now(), results = coalesce($6::jsonb, results) "
                    "WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                    op_id,
                    owner,
                    done,
                    total,
                    lease,
                    orjson.dumps(results).decode() if results is not None else None,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return bool(tag.endswith(" 1"))

    async def finish(
        self,
        op_id: uuid.UUID,
        *,
        owner: str,
        status: Status,
        error: str | None = None,
        results: Any = None,
    ) -> bool:
        """Mark the operation terminal (``completed`` sets percentComplete to 100)."""
        try:
            async with self._acquire() as conn:
                return await finish_operation(conn, op_id, owner=owner, status=status, error=error, results=results)
        except _DB_DOWN as e:
            raise _db_errors(e) from e


async def finish_operation(
    conn: asyncpg.Connection | Any,
    op_id: uuid.UUID,
    *,
    owner: str,
    status: Status,
    error: str | None = None,
    results: Any = None,
) -> bool:
    """:meth:`OperationStore.finish` on ``conn`` (inside the caller's transaction)."""
    tag = await conn.execute(
        "UPDATE operations SET status = $3, error = $4, results = $5::jsonb, lease_owner = NULL, "
        "lease_expires_at = NULL, updated_at = now(), "
        "percent_complete = CASE WHEN $3 = 'completed' THEN 100 ELSE percent_complete END "
        "WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        op_id,
        owner,
        status,
        error,
        orjson.dumps(results).decode() if results is not None else None,
    )
    return bool(tag.endswith(" 1"))
