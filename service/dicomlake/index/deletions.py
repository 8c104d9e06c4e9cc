"""Deletion queue statistics, shared by every replica (the queue lives in PostgreSQL): the backlog,
the rows whose retries are exhausted, and the age of the oldest row. Read by ``/health/check`` and
``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

#: After this many failed attempts a queued deletion counts as "exhausted": it is still retried (back-off
#: growing to hourly), but the deletion-queue health detail turns Degraded and names the error.
EXHAUSTED_AFTER_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class DeletionQueueStats:
    backlog: int
    due: int
    exhausted: int
    oldest_age_seconds: float
    last_error: str | None


async def deletion_queue_stats(pool: asyncpg.Pool, *, acquire_timeout: float = 3.0) -> DeletionQueueStats:
    """Raises the driver's errors; callers report them (health) or map them (metrics)."""
    async with pool.acquire(timeout=acquire_timeout) as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS backlog, count(*) FILTER (WHERE next_attempt_at <= now()) AS due, "
            "count(*) FILTER (WHERE attempts >= $1) AS exhausted, "
            "coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8 AS oldest, "
            "(SELECT last_error FROM deletion_queue WHERE attempts >= $1 ORDER BY id DESC LIMIT 1) AS last_error "
            "FROM deletion_queue",
            EXHAUSTED_AFTER_ATTEMPTS,
        )
    assert row is not None
    return DeletionQueueStats(
        backlog=row["backlog"],
        due=row["due"],
        exhausted=row["exhausted"],
        oldest_age_seconds=float(row["oldest"]),
        last_error=row["last_error"],
    )
