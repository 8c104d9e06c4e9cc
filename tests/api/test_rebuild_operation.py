"""``POST /v2/operations/rebuild-from-lake``: the index rebuilt from the lake as a long-running operation
run by a replica's worker, with progress and results in ``GET /v2/operations/{id}``; one rebuild at a
time; a crashed worker's rebuild is taken over once its lease passes and skips what is indexed."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from dicomlake.app import create_app
from dicomlake.config import Settings
from dicomlake.jobs.rebuild import REBUILD, RebuildWorker, start_rebuild
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout
from tests.api.test_stow import stow
from tests.factories import instance_bytes, make_dataset, new_uid, to_bytes
from tests.helpers.asgi import running_app

pytestmark = pytest.mark.integration
JSON = {"Accept": "application/dicom+json"}
PREFIXES = ("/v2", "/v2/partitions/second")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as p:
        yield p


async def _store(client: httpx.AsyncClient) -> int:
    study = new_uid()
    default = [
        to_bytes(make_dataset(study=study, frames=3, rows=64, columns=64)),
        instance_bytes(study=study),
        instance_bytes(),
    ]
    second = [instance_bytes(rows=32, columns=32) for _ in range(2)]
    for prefix, parts in zip(PREFIXES, (default, second), strict=True):
        r = await stow(client, parts, path=f"{prefix}/studies")
        assert r.status_code == 200, r.text
    return len(default) + len(second)


async def _answers(client: httpx.AsyncClient) -> dict[str, Any]:
    """QIDO at every level and WADO metadata of every study and instance."""
    out: dict[str, Any] = {}
    for prefix in PREFIXES:
        studies = await client.get(f"{prefix}/studies", params={"includefield": "all"}, headers=JSON)
        out[f"{prefix} studies"] = (studies.status_code, studies.content)
        for study in [s["0020000D"]["Value"][0] for s in (studies.json() if studies.status_code == 200 else [])]:
            for what in ("series", "instances"):
                r = await client.get(f"{prefix}/studies/{study}/{what}", params={"includefield": "all"}, headers=JSON)
                out[f"{prefix} {study} {what}"] = (r.status_code, r.content)
            metadata = await client.get(f"{prefix}/studies/{study}/metadata", headers=JSON)
            out[f"{prefix} {study} metadata"] = (metadata.status_code, metadata.content)
            for item in metadata.json():
                series, sop = item["0020000E"]["Value"][0], item["00080018"]["Value"][0]
                url = f"{prefix}/studies/{study}/series/{series}/instances/{sop}/metadata"
                r = await client.get(url, headers=JSON)
                out[url] = (r.status_code, r.content)
    return out


async def _wait(client: httpx.AsyncClient, href: str) -> tuple[dict[str, Any], list[int]]:
    """The finished operation and every percentComplete seen while polling."""
    seen: list[int] = []
    for _ in range(600):
        r = await client.get(href)
        assert r.status_code in (200, 202), r.text
        body: dict[str, Any] = r.json()
        seen.append(body["percentComplete"])
        if r.status_code == 200:
            return body, seen
        await asyncio.sleep(0.05)
    raise AssertionError("the rebuild did not finish")


async def test_rebuild_operation_restores_an_emptied_index(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    stored = await _store(client)
    before = await _answers(client)
    await pool.execute("DELETE FROM instances")  # the index is lost; the lake still has every file
    empty = await client.get("/v2/studies", headers=JSON)
    assert empty.status_code == 204 or empty.json() == []

    r = await client.post("/v2/operations/rebuild-from-lake")
    assert r.status_code == 202, r.text
    created = r.json()
    assert set(created) == {"id", "href"}
    assert created["href"].endswith(f"/v2/operations/{created['id']}")
    assert r.headers["location"] == created["href"]

    op, seen = await _wait(client, created["href"])
    assert op["type"] == REBUILD
    assert op["status"] == "completed"
    assert op["percentComplete"] == 100
    assert all(0 <= p <= 100 for p in seen)
    results = op["results"]
    assert results["partition"] is None
    assert results["filesFound"] == stored
    assert results["instancesIndexed"] == stored
    assert results["instancesSkipped"] == 0
    assert results["filesRefused"] == 0
    assert results["refusedFiles"] == []
    assert 0 < results["bytesRead"] <= results["bytesInFiles"]

    assert await _answers(client) == before

    # One partition, nothing left to do: everything is skipped.
    r = await client.post("/v2/operations/rebuild-from-lake", json={"partition": "second"})
    assert r.status_code == 202, r.text
    op, _ = await _wait(client, r.json()["href"])
    assert op["status"] == "completed"
    assert op["results"] | {"bytesRead": 0, "bytesInFiles": 0} == {
        "partition": "second",
        "filesFound": 2,
        "instancesIndexed": 0,
        "instancesSkipped": 2,
        "filesRefused": 0,
        "olderVersionsQueuedForDeletion": 0,
        "bytesRead": 0,
        "bytesInFiles": 0,
        "refusedFiles": [],
    }


async def test_one_rebuild_at_a_time_and_bad_bodies(settings: Settings) -> None:
    async with running_app(create_app(dataclasses.replace(settings, operations_worker=False))) as client:
        first = await client.post("/v2/operations/rebuild-from-lake", json={})
        assert first.status_code == 202, first.text
        pending = await client.get(first.json()["href"])
        assert pending.status_code == 202
        assert pending.json()["status"] == "notStarted"
        again = await client.post("/v2/operations/rebuild-from-lake")
        assert again.status_code == 409
        assert again.json()["code"] == "OperationAlreadyRunning"
        for body, code in (
            ({"partition": "no spaces"}, "InvalidPartitionName"),
            ({"partition": 3}, "InvalidPartitionName"),
            ({"other": 1}, "InvalidRebuildRequest"),
            ([], "InvalidRebuildRequest"),
        ):
            r = await client.post("/v2/operations/rebuild-from-lake", json=body)
            assert r.status_code == 400, body
            assert r.json()["code"] == code
        r = await client.post(
            "/v2/operations/rebuild-from-lake", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        r = await client.post("/v2/operations/rebuild-from-lake", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415


async def test_crashed_worker_is_taken_over_and_indexed_instances_are_skipped(
    settings: Settings, pool: asyncpg.Pool, blob_store: AzureBlobStore
) -> None:
    quiet = dataclasses.replace(settings, operations_worker=False)
    async with running_app(create_app(quiet)) as client:
        stored = await _store(client)
        before = await _answers(client)
        # Half the index is lost, as if a first worker had re-indexed the rest before it died.
        lost = await pool.fetchval(
            "WITH gone AS (DELETE FROM instances WHERE watermark % 2 = 0 RETURNING 1) SELECT count(*) FROM gone"
        )
        assert 0 < lost < stored
        op_id = await start_rebuild(pool, None, owner="dead-worker", lease=dt.timedelta(milliseconds=200))
        layout = LakeLayout(settings.workspace, settings.service_name)
        worker = RebuildWorker(pool, blob_store, layout, owner="survivor", report_interval=0.05)
        assert await worker.run_once() == 0  # the dead worker's lease has not passed yet
        await asyncio.sleep(0.3)
        assert await worker.run_once() == 1
        op, _ = await _wait(client, f"/v2/operations/{op_id}")
        assert op["status"] == "completed"
        assert op["results"]["instancesIndexed"] == lost
        assert op["results"]["instancesSkipped"] == stored - lost
        assert await _answers(client) == before
        # Each instance once: one committed row per SOP.
        assert await pool.fetchval("SELECT count(*) FROM instances WHERE status = 2") == stored
