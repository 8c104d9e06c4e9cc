"""Change feed reads (Microsoft v2 semantics) over the ``changefeed`` table.

Rows are appended by the transactions that commit a store (``create``/``update``) or a delete
(``delete``), each holding the transaction-level advisory lock ``CHANGEFEED_LOCK_KEY`` while it takes
its sequence number. Sequences are therefore handed out in commit order, and a reader paging through
the feed never sees an entry appear behind one it has already read.

``state`` is derived when reading, as the Azure service does: ``current`` if the entry's version is
the committed version of the instance, ``replaced`` if another committed version exists, ``deleted``
if none does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from dicomlake.index.instances import _DB_DOWN, _db_errors


@dataclass(frozen=True, slots=True)
class ChangeFeedEntry:
    sequence: int
    partition_name: str
    study_uid: str
    series_uid: str
    sop_uid: str
    action: str
    timestamp: dt.datetime
    state: str
    blob_name: str | None
    #: DICOM JSON text of the instance's current version; None when deleted or not asked for.
    metadata_json: str | None


_SELECT = (
    "SELECT c.sequence, p.name AS partition_name, c.study_uid, c.series_uid, c.sop_uid, c.action, "
    "c.occurred_at, c.blob_name, c.watermark, i.watermark AS current_watermark, "
    "CASE WHEN $2 THEN i.metadata::text END AS metadata "
    "FROM changefeed c JOIN partitions p ON p.partition_key = c.partition_key "
    "LEFT JOIN instances i ON i.partition_key = c.partition_key AND i.study_uid = c.study_uid "
    "AND i.series_uid = c.series_uid AND i.sop_uid = c.sop_uid AND i.status = 2 "
)


def _entry(row: asyncpg.Record) -> ChangeFeedEntry:
    current = row["current_watermark"]
    state = "deleted" if current is None else "current" if current == row["watermark"] else "replaced"
    return ChangeFeedEntry(
        sequence=row["sequence"],
        partition_name=row["partition_name"],
        study_uid=row["study_uid"],
        series_uid=row["series_uid"],
        sop_uid=row["sop_uid"],
        action=row["action"],
        timestamp=row["occurred_at"],
        state=state,
        blob_name=row["blob_name"],
        metadata_json=row["metadata"],
    )


class ChangeFeed:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def _acquire(self) -> Any:
        return self._pool.acquire(timeout=self._acquire_timeout)

    async def read(
        self,
        partition_key: int,
        *,
        start: dt.datetime,
        end: dt.datetime,
        offset: int,
        limit: int,
        include_metadata: bool,
    ) -> list[ChangeFeedEntry]:
        """Entries of one partition with ``start <= timestamp < end``, in sequence order, skipping
        ``offset`` of them and returning at most ``limit``."""
        try:
            async with self._acquire() as conn:
                rows = await conn.fetch(
                    _SELECT + "WHERE c.partition_key = $1 AND c.occurred_at >= $3 AND c.occurred_at < $4 "
                    "ORDER BY c.sequence OFFSET $5 LIMIT $6",
                    partition_key,
                    include_metadata,
                    start,
                    end,
                    offset,
                    limit,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return [_entry(r) for r in rows]

    async def latest(self, partition_key: int, *, include_metadata: bool) -> ChangeFeedEntry | None:
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(
                    _SELECT + "WHERE c.sequence = (SELECT max(sequence) FROM changefeed WHERE partition_key = $1)",
                    partition_key,
                    include_metadata,
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return _entry(row) if row is not None else None
