"""Deletion queue: retries with back-off, exhausted retries in /health/check and /metrics, and an
idempotent drain (a worker that died after deleting the file but before dequeuing it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from dicomlake.index.deletions import EXHAUSTED_AFTER_ATTEMPTS
from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_stow import stow
from tests.factories import make_dataset, to_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as p:
        yield p


def metric(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


async def queue_detail(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/health/check")
    body = response.json()
    # Background work never changes readiness or the overall status.
    assert response.status_code == 200
    assert body["overallStatus"] == "Healthy"
    return next(d for d in body["details"] if d["name"] == "deletionQueue")  # type: ignore[no-any-return]


async def test_failures_back_off_then_exhaust_then_recover(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool, azurite: str
) -> None:
    ds = make_dataset()
    assert (await stow(client, [to_bytes(ds)])).status_code == 200
    blob_name = await pool.fetchval("SELECT blob_name FROM instances")
    assert (await client.delete(f"/v2/studies/{ds.StudyInstanceUID}")).status_code == 204

    detail = await queue_detail(client)
    assert detail["status"] == "Healthy"
    assert detail["data"] == {"backlog": 1, "due": 1, "exhausted": 0, "oldestAgeSeconds": 0}
    text = (await client.get("/metrics")).text
    assert metric(text, "dicomlake_deletion_queue_backlog") == 1
    assert metric(text, "dicomlake_deletion_queue_exhausted") == 0

    # A worker whose storage refuses (here: a container that does not exist) backs off.
    async with AzureBlobStore.from_connection_string(azurite, "no-such-container") as broken:
        result = await Janitor(pool, broken).run_once()
        assert (result.blobs_deleted, result.failures, result.exhausted) == (0, 1, 0)
        row = await pool.fetchrow("SELECT attempts, last_error, next_attempt_at > now() AS later FROM deletion_queue")
        assert row["attempts"] == 1
        assert row["last_error"] == "StorageContainerNotFound"
        assert row["later"]
        # Not due: the next pass does not retry it.
        assert (await Janitor(pool, broken).run_once()).failures == 0

        # The failure that reaches the limit counts as exhausted.
        await pool.execute(
            "UPDATE deletion_queue SET attempts = $1, next_attempt_at = now()", EXHAUSTED_AFTER_ATTEMPTS - 1
        )
        result = await Janitor(pool, broken).run_once()
        assert (result.failures, result.exhausted) == (1, 1)

    detail = await queue_detail(client)
    assert detail["status"] == "Degraded"
    assert "StorageContainerNotFound" in str(detail["description"])
    assert detail["data"]["exhausted"] == 1  # type: ignore[index]
    text = (await client.get("/metrics")).text
    assert metric(text, "dicomlake_deletion_queue_exhausted") == 1
    assert metric(text, "dicomlake_deletion_queue_due") == 0
    assert (await client.get("/health/ready")).status_code == 200
    assert (await blob_store.get_properties(blob_name)).size > 0

    # Still retried (with back-off, up to hourly): once storage works again, the file goes.
    await pool.execute("UPDATE deletion_queue SET next_attempt_at = now()")
    assert (await Janitor(pool, blob_store).run_once()).blobs_deleted == 1
    assert [b async for b in blob_store.list_blobs(blob_name)] == []
    detail = await queue_detail(client)
    assert detail["status"] == "Healthy"
    assert detail["data"]["backlog"] == 0  # type: ignore[index]
    assert metric((await client.get("/metrics")).text, "dicomlake_deletion_queue_backlog") == 0


async def test_drain_is_idempotent_when_the_file_is_already_gone(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool
) -> None:
    ds = make_dataset()
    assert (await stow(client, [to_bytes(ds)])).status_code == 200
    blob_name = await pool.fetchval("SELECT blob_name FROM instances")
    assert (await client.delete(f"/v2/studies/{ds.StudyInstanceUID}")).status_code == 204
    # As if a worker deleted the file and died before removing the queue row.
    await blob_store.delete(blob_name)
    result = await Janitor(pool, blob_store).run_once()
    assert (result.blobs_deleted, result.failures) == (1, 0)
    assert await pool.fetchval("SELECT count(*) FROM deletion_queue") == 0
