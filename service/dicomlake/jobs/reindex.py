"""Reindex worker: runs the ``reindex`` operations that adding extended query tags creates.

Runs in every replica (unless ``DICOM_OPERATIONS_WORKER=false``). It claims an operation through
PostgreSQL (:meth:`~dicomlake.index.operations.OperationStore.claim`: ``FOR UPDATE SKIP LOCKED`` and a
lease), then indexes committed instances in batches in watermark order, extracting the values from the
stored metadata (no file reads). Each batch stores the cursor and renews the lease in the transaction
that writes its values, so a crashed worker's operation is taken over by another replica once its
lease expires, from the last batch that committed; no instance is indexed twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid

import asyncpg

from dicomlake.index.extended_tags import REINDEX, ExtendedTagIndex, StepResult
from dicomlake.index.operations import DEFAULT_LEASE, Operation, OperationStore
from dicomlake.jobs.loop import run_until_stopped

logger = logging.getLogger(__name__)
BATCH = 500


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ReindexWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        owner: str | None = None,
        batch_size: int = BATCH,
        lease: dt.timedelta = DEFAULT_LEASE,
        interval: float = 5.0,
    ) -> None:
        self.owner = owner or worker_id()
        self.batch_size = batch_size
        self.lease = lease
        self.interval = interval
        self._operations = OperationStore(pool)
        self._tags = ExtendedTagIndex(pool)
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Look for work now (a tag was just added on this replica)."""
        self._wake.set()

    async def claim(self) -> Operation | None:
        return await self._operations.claim((REINDEX,), self.owner, lease=self.lease)

    async def step(self, op_id: uuid.UUID) -> StepResult:
        return await self._tags.reindex_step(op_id, self.owner, batch_size=self.batch_size, lease=self.lease)

    async def run_operation(self, op_id: uuid.UUID, *, max_batches: int | None = None) -> StepResult:
        """Batches until the operation completes, the lease is lost, or ``max_batches`` ran."""
        batches = 0
        while True:
            result = await self.step(op_id)
            batches += 1
            if result.finished:
                logger.info("reindex operation completed", extra={"operation": str(op_id)})
                return result
            if result.lost:
                logger.warning("reindex operation taken over by another worker", extra={"operation": str(op_id)})
                return result
            if max_batches is not None and batches >= max_batches:
                return result

    async def run_once(self) -> int:
        """Finish interrupted tag deletions, then run every claimable operation; returns how many ran."""
        await self._tags.purge_deleting()
        ran = 0
        while (op := await self.claim()) is not None:
            logger.info(
                "reindex operation claimed",
                extra={"operation": str(op.id), "cursor": op.cursor_watermark, "resumed": op.done > 0},
            )
            await self.run_operation(op.id)
            ran += 1
        return ran

    async def run_forever(self, stop: asyncio.Event) -> None:
        await run_until_stopped(self.run_once, stop=stop, wake=self._wake, interval=self.interval, name="reindex")
