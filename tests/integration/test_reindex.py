"""Reindex operations through PostgreSQL: a worker that crashes mid-way is resumed by another from the
stored watermark and every instance is indexed exactly once; a live lease is not taken; the old owner
cannot write after a takeover; instances committed during the reindex are indexed by the commit trigger;
the generic operation API another job can use."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dicomlake.index.extended_tags import ExtendedTagIndex, NewTag
from dicomlake.index.operations import OperationStore
from dicomlake.index.search import bulk_load
from dicomlake.jobs.reindex import ReindexWorker

pytestmark = pytest.mark.integration

AGE = "00101010"


def meta(i: int) -> dict[str, Any]:
    return {AGE: {"vr": "AS", "Value": [f"{i:03d}Y"]}}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


async def load(pool: asyncpg.Pool, first: int, count: int) -> None:
    rows = [(f"1.2.{i}", f"1.2.{i}.1", f"1.2.{i}.1.1", "1.2.840.10008.5.1.4.1.1.2", meta(i)) for i in range(first, first + count)]  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        await bulk_load(conn, 1, rows)


async def test_a_crashed_worker_is_resumed_from_the_stored_watermark(pool: asyncpg.Pool) -> None:
    await load(pool, 0, 25)
    op_id = await ExtendedTagIndex(pool).add([NewTag(AGE, "AS", "Study")])

    first = ReindexWorker(pool, owner="replica-a", batch_size=10)
    claimed = await first.claim()
    assert claimed is not None
    assert claimed.id == op_id
    assert claimed.total == 25
    step = await first.step(op_id)
    assert step.count == 10
    # while replica-a's lease is live, nobody else takes the operation
    second = ReindexWorker(pool, owner="replica-b", batch_size=10)
    assert await second.claim() is None

    # replica-a crashes: it stops renewing; its lease runs out
    async with pool.acquire() as conn:
        await conn.execute("UPDATE operations SET lease_expires_at = now() - interval '1 second' WHERE id = $1", op_id)
    op = await OperationStore(pool).get(op_id)
    assert op is not None
    assert (op.cursor_watermark, op.done, op.percent_complete, op.status) == (step.last, 10, 40, "running")

    taken = await second.claim()
    assert taken is not None
    assert taken.id == op_id
    assert taken.cursor_watermark == step.last
    resumed = await second.step(op_id)
    assert resumed.first is not None
    assert step.last is not None
    assert resumed.first > step.last  # from the stored watermark, nothing redone
    # the crashed owner, should it wake up, can no longer write
    assert (await first.step(op_id)).lost
    final = await second.run_operation(op_id)
    assert final.finished

    async with pool.acquire() as conn:
        per_instance = await conn.fetch(
            "SELECT i.watermark, count(v.value) AS n FROM instances i "
            "LEFT JOIN extended_query_tag_values v ON v.watermark = i.watermark GROUP BY i.watermark"
        )
        assert len(per_instance) == 25
        assert {r["n"] for r in per_instance} == {1}
        status = await conn.fetchval("SELECT status FROM extended_query_tags WHERE path = $1", AGE)
    assert status == "Ready"
    done = await OperationStore(pool).get(op_id)
    assert done is not None
    assert (done.status, done.percent_complete, done.done, done.lease_owner) == ("completed", 100, 25, None)
    assert await second.claim() is None


async def test_instances_committed_during_the_reindex_are_indexed_on_commit(pool: asyncpg.Pool) -> None:
    await load(pool, 0, 5)
    op_id = await ExtendedTagIndex(pool).add([NewTag(AGE, "AS", "Study")])
    await load(pool, 100, 3)  # after the tag exists (status Adding), before the worker runs
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 3
        high = await conn.fetchval("SELECT max_watermark FROM operations WHERE id = $1", op_id)
        assert await conn.fetchval("SELECT count(*) FROM instances WHERE watermark > $1", high) == 3
    assert await ReindexWorker(pool).run_once() == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 8
        assert await conn.fetchval("SELECT count(DISTINCT watermark) FROM extended_query_tag_values") == 8


async def test_deleting_a_tag_during_its_reindex_completes_the_operation(pool: asyncpg.Pool) -> None:
    await load(pool, 0, 4)
    tags = ExtendedTagIndex(pool)
    op_id = await tags.add([NewTag(AGE, "AS", "Study")])
    worker = ReindexWorker(pool, batch_size=2)
    assert await worker.claim() is not None
    await worker.step(op_id)
    assert await tags.delete(AGE)
    assert (await worker.run_operation(op_id)).finished
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 0
    op = await OperationStore(pool).get(op_id)
    assert op is not None
    assert op.status == "completed"


async def test_an_interrupted_tag_deletion_is_finished_by_the_worker(pool: asyncpg.Pool) -> None:
    await load(pool, 0, 2)
    tags = ExtendedTagIndex(pool)
    await tags.add([NewTag(AGE, "AS", "Study")])
    await ReindexWorker(pool).run_once()
    async with pool.acquire() as conn:  # step one of a deletion, then a crash
        await conn.execute("UPDATE extended_query_tags SET status = 'Deleting'")
    await ReindexWorker(pool).run_once()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tags") == 0
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 0


async def test_generic_operations_for_other_jobs(pool: asyncpg.Pool) -> None:
    store = OperationStore(pool)
    op_id = await store.create("rebuild", owner="job-1", total=200, lease=dt.timedelta(minutes=5))
    op = await store.get(op_id)
    assert op is not None
    assert (op.type, op.status, op.percent_complete) == ("rebuild", "running", 0)
    assert await store.progress(op_id, owner="job-1", done=50)
    assert not await store.progress(op_id, owner="someone-else", done=199)
    op = await store.get(op_id)
    assert op is not None
    assert op.percent_complete == 25
    # the reindex worker does not claim other types
    assert await ReindexWorker(pool).claim() is None
    assert await store.finish(op_id, owner="job-1", status="failed", error="storage unreachable")
    op = await store.get(op_id)
    assert op is not None
    assert (op.status, op.error, op.terminal) == ("failed", "storage unreachable", True)
    assert not await store.finish(op_id, owner="job-1", status="completed")  # terminal stays terminal
