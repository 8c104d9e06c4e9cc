"""Janitor: sweeps expired pending reservations (a store that crashed or was abandoned) and drains the
deletion queue. Runs in every replica; PostgreSQL row locks (``FOR UPDATE SKIP LOCKED``) make sure each
row is handled by one replica only, and a crash mid-way leaves the row to be retried."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from dicomlake.crashpoints import crash_point
from dicomlake.errors import DicomWebError
from dicomlake.index.deletions import EXHAUSTED_AFTER_ATTEMPTS
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout

logger = logging.getLogger(__name__)
BATCH = 100
MAX_BACKOFF_SECONDS = 3600


@dataclass(slots=True)
class JanitorPass:
    expired_reservations: int = 0
    blobs_deleted: int = 0
    failures: int = 0
    #: Rows that reached EXHAUSTED_AFTER_ATTEMPTS failures in this pass (still retried, up to hourly).
    exhausted: int = 0


class Janitor:
    def __init__(self, pool: asyncpg.Pool, blobs: AzureBlobStore, *, interval: float = 30.0) -> None:
        self._pool = pool
        self._blobs = blobs
        self.interval = interval

    async def run_once(self) -> JanitorPass:
        result = JanitorPass()
        result.expired_reservations = await self._expire_reservations()
        while True:
            deleted, failed, exhausted, batch = await self._drain_batch()
            result.blobs_deleted += deleted
            result.failures += failed
            result.exhausted += exhausted
            if batch < BATCH:
                return result

    async def _expire_reservations(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM instances WHERE watermark IN (SELECT watermark FROM instances WHERE status = 1 "
                "AND lease_expires_at < now() FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING blob_name",
                BATCH * 10,
            )
            if rows:
                await conn.executemany(
                    "INSERT INTO deletion_queue (blob_name, reason) VALUES ($1, 'expired reservation')",
                    [(r["blob_name"],) for r in rows],
                )
        return len(rows)

    async def _drain_batch(self) -> tuple[int, int, int, int]:
        deleted = failed = exhausted = 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, blob_name, attempts FROM deletion_queue WHERE next_attempt_at <= now() "
                "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1",
                BATCH,
            )
            for row in rows:
                # A blob still referenced by a committed or pending instance must survive (e.g. a retried
                # store that reserved the same name is impossible: names carry unique watermarks).
                try:
                    await self._blobs.delete(row["blob_name"])
                    if row["blob_name"].endswith(".dcm"):
                        # The version's cached thumbnail, if one was ever rendered (a missing blob is fine).
                        await self._blobs.delete(LakeLayout.thumbnail_blob(row["blob_name"]))
                except DicomWebError as e:
                    failed += 1
                    backoff = min(MAX_BACKOFF_SECONDS, 2 ** min(row["attempts"], 12))
                    await conn.execute(
                        "UPDATE deletion_queue SET attempts = attempts + 1, last_error = $2, "
                        "next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
                        row["id"],
                        e.code,
                        float(backoff),
                    )
                    if row["attempts"] + 1 == EXHAUSTED_AFTER_ATTEMPTS:
                        exhausted += 1
                        logger.warning(
                            "blob deletion retries exhausted; retrying with back-off up to hourly",
                            extra={"code": e.code, "attempts": row["attempts"] + 1},
                        )
                    continue
                crash_point("janitor-after-blob-delete")  # test builds only: the row stays queued
                await conn.execute("DELETE FROM deletion_queue WHERE id = $1", row["id"])
                deleted += 1
        return deleted, failed, exhausted, len(rows)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                logger.exception("janitor pass failed")
            try:
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            except TimeoutError:
                pass
