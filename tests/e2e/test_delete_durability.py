"""Delete durability: the real service is killed between the index commit of a DELETE and the removal
of the files (test-only crash point ``after-delete-commit``); a new process on the same database and
container drains the deletion queue and the files are gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from dicomlake.crashpoints import ENV, EXIT_CODE
from dicomlake.storage.blob_store import AzureBlobStore
from tests.factories import make_dataset, multipart, new_uid, to_bytes
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = "AHDS/workspace/dicom/dicom/Microsoft.Default/"


async def names(blobs: AzureBlobStore, prefix: str) -> list[str]:
    return [b.name async for b in blobs.list_blobs(prefix)]


async def test_killed_after_delete_commit_then_restart_removes_files(
    database_url: str, azurite: str, container: str, blob_store: AzureBlobStore, tmp_path: Path
) -> None:
    env = {
        "DICOM_DATABASE_URL": database_url,
        "DICOM_STORAGE_CONNECTION_STRING": azurite,
        "DICOM_STORAGE_ACCOUNT_URL": "",
        "DICOM_STORAGE_CONTAINER": container,
        "DICOM_STORAGE_CREATE_CONTAINER": "true",
    }
    first = ServiceProcess({**env, ENV: "after-delete-commit"}, log_path=tmp_path / "first.log")
    await asyncio.to_thread(first.start)
    try:
        study = new_uid()
        body, content_type = multipart([to_bytes(make_dataset(study=study)) for _ in range(3)])
        async with httpx.AsyncClient(base_url=first.base_url, timeout=30) as client:
            stored = await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})
            assert stored.status_code == 200, stored.text
            assert len(await names(blob_store, ROOT + study)) == 3
            with pytest.raises(httpx.TransportError):
                await client.delete(f"/v2/studies/{study}")
    finally:
        first.stop()  # already dead unless the crash point was not reached
    assert first.process is not None
    assert await asyncio.to_thread(first.process.wait, 30) == EXIT_CODE, first.log()

    # Killed after the commit: the index says deleted, the queue holds the files, the files are still there.
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM instances") == 0
        assert await conn.fetchval("SELECT count(*) FROM deletion_queue WHERE reason = 'deleted'") == 3
        assert await conn.fetchval("SELECT count(*) FROM changefeed WHERE action = 'delete'") == 3
    finally:
        await conn.close()
    assert len(await names(blob_store, ROOT + study)) == 3

    second = ServiceProcess(env, log_path=tmp_path / "second.log")
    await asyncio.to_thread(second.start)
    try:
        # The janitor's first pass runs at start-up; wait for it (bounded), then check the outcome.
        deadline = time.monotonic() + 60
        while await names(blob_store, ROOT + study) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await names(blob_store, ROOT + study) == []
        async with httpx.AsyncClient(base_url=second.base_url, timeout=30) as client:
            assert (await client.get(f"/v2/studies/{study}/metadata")).status_code == 404
            feed = (await client.get("/v2/changefeed", params={"includemetadata": "false"})).json()
            assert [(e["action"], e["state"]) for e in feed] == [("create", "deleted")] * 3 + [
                ("delete", "deleted")
            ] * 3
            health = (await client.get("/health/check")).json()
            queue = next(d for d in health["details"] if d["name"] == "deletionQueue")
            assert queue["data"]["backlog"] == 0
    finally:
        second.stop()
