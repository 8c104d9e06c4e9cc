"""Change feed (Microsoft v2): entries, states, metadata, paging, time window, latest, errors, and
ordering under 8 concurrent writers with a reader polling throughout."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_stow import stow
from tests.factories import make_dataset, new_uid, to_bytes

pytestmark = pytest.mark.integration
KEYS = {
    "sequence",
    "partitionName",
    "studyInstanceUid",
    "seriesInstanceUid",
    "sopInstanceUid",
    "action",
    "timestamp",
    "state",
    "metadata",
    "filePath",
}


async def feed(client: httpx.AsyncClient, path: str = "/v2/changefeed", **params: Any) -> list[dict[str, Any]]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, list)
    return body


async def read_all(client: httpx.AsyncClient, path: str = "/v2/changefeed", limit: int = 7) -> list[dict[str, Any]]:
    """Page until a page is shorter than ``limit``, as Microsoft's clients do."""
    out: list[dict[str, Any]] = []
    while True:
        page = await feed(client, path, offset=len(out), limit=limit, includemetadata="false")
        out += page
        if len(page) < limit:
            return out


async def test_entries_states_metadata_and_file_paths(client: httpx.AsyncClient, blob_store: AzureBlobStore) -> None:
    study = new_uid()
    a, b = make_dataset(study=study), make_dataset(study=study)
    assert (await stow(client, [to_bytes(a), to_bytes(b)])).status_code == 200
    b.PatientID = "PAT-2"
    assert (await stow(client, [to_bytes(b)], method="PUT")).status_code == 200
    url_a = f"/v2/studies/{study}/series/{a.SeriesInstanceUID}/instances/{a.SOPInstanceUID}"
    assert (await client.delete(url_a)).status_code == 204

    entries = await feed(client)
    assert [(e["action"], e["sopInstanceUid"], e["state"]) for e in entries] == [
        ("create", a.SOPInstanceUID, "deleted"),
        ("create", b.SOPInstanceUID, "replaced"),
        ("update", b.SOPInstanceUID, "current"),
        ("delete", a.SOPInstanceUID, "deleted"),
    ]
    sequences = [e["sequence"] for e in entries]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 4
    for e in entries:
        assert set(e) <= KEYS
        assert e["partitionName"] == "Microsoft.Default"
        assert e["studyInstanceUid"] == study
        assert e["timestamp"].endswith("Z")
        dt.datetime.fromisoformat(e["timestamp"])
        assert e["filePath"].startswith(f"AHDS/workspace/dicom/dicom/Microsoft.Default/{study}/")
    stamps = [dt.datetime.fromisoformat(e["timestamp"]) for e in entries]
    assert stamps == sorted(stamps)
    # Deleted instances carry no metadata; others carry the current version's metadata.
    assert "metadata" not in entries[0]
    assert "metadata" not in entries[3]
    assert entries[1]["metadata"]["00100020"]["Value"] == ["PAT-2"]
    assert entries[2]["metadata"]["00080018"]["Value"] == [b.SOPInstanceUID]
    bulk = entries[2]["metadata"]["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(
        f"http://testserver/v2/studies/{study}/series/{b.SeriesInstanceUID}/instances/{b.SOPInstanceUID}/bulkdata/"
    )
    assert (await client.get(bulk.removeprefix("http://testserver"))).status_code == 200
    # FilePath of the current entry is the file in the lake, readable directly.
    assert (await blob_store.get_properties(entries[2]["filePath"])).size > 0
    assert entries[1]["filePath"] != entries[2]["filePath"]
    assert entries[3]["filePath"] == entries[0]["filePath"]

    assert all("metadata" not in e for e in await feed(client, includemetadata="false"))
    assert all("metadata" not in e for e in await feed(client, IncludeMetadata="FALSE"))

    latest = await client.get("/v2/changefeed/latest")
    assert latest.status_code == 200
    assert latest.json()["sequence"] == sequences[-1]
    assert latest.json()["action"] == "delete"
    latest = await client.get("/v2/changefeed/latest", params={"includemetadata": "false"})
    assert latest.json()["sequence"] == sequences[-1]


async def test_azure_profile_omits_binary_metadata(azure_client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    assert (await stow(azure_client, [to_bytes(ds)])).status_code == 200
    entries = await feed(azure_client)
    assert len(entries) == 1
    assert "7FE00010" not in entries[0]["metadata"]
    assert entries[0]["metadata"]["00080018"]["Value"] == [ds.SOPInstanceUID]


async def test_paging_time_window_and_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/changefeed/latest")).status_code == 204
    assert await feed(client) == []
    datasets = [make_dataset() for _ in range(5)]
    for ds in datasets:
        assert (await stow(client, [to_bytes(ds)])).status_code == 200
    everything = await feed(client)
    assert [e["sopInstanceUid"] for e in everything] == [ds.SOPInstanceUID for ds in datasets]

    assert [e["sequence"] for e in await feed(client, offset=1, limit=2)] == [e["sequence"] for e in everything[1:3]]
    assert await feed(client, offset=5) == []
    assert [e["sequence"] for e in await read_all(client, limit=2)] == [e["sequence"] for e in everything]

    # startTime inclusive, endTime exclusive.
    third = everything[2]["timestamp"]
    assert [e["sequence"] for e in await feed(client, startTime=third)] == [e["sequence"] for e in everything[2:]]
    assert [e["sequence"] for e in await feed(client, endTime=third)] == [e["sequence"] for e in everything[:2]]
    assert await feed(client, startTime=third, endTime=third) == []
    assert len(await feed(client, startTime="2000-01-01", endTime="9999-12-31T23:59:59.9999999Z")) == 5
    assert len(await feed(client, starttime="2000-01-01T00:00:00+00:00")) == 5
    assert await feed(client, endTime="2000-01-01T00:00:00Z") == []

    for params in (
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
        {"offset": "-1"},
        {"startTime": "yesterday"},
        {"endTime": "2024-13-01"},
        {"startTime": "2024-02-01", "endTime": "2024-01-01"},
        {"includemetadata": "maybe"},
    ):
        response = await client.get("/v2/changefeed", params=params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "InvalidQuery"
    assert (await client.get("/v2/changefeed/latest", params={"includemetadata": "1"})).status_code == 400
    assert len(await feed(client, limit=200)) == 5
    assert (await client.get("/v2/partitions/nowhere/changefeed")).status_code == 404
    assert (await client.get("/v2/partitions/nowhere/changefeed/latest")).status_code == 404


WRITERS = 8
PER_WRITER = 6


async def test_ordering_under_concurrent_writers(client: httpx.AsyncClient) -> None:
    """8 writers store and delete concurrently while a reader pages through the feed again and again.
    Every read must be a gap-free prefix of the final feed: no entry ever appears behind one already
    seen."""
    done = asyncio.Event()
    snapshots: list[list[int]] = []

    async def writer(n: int) -> None:
        study = new_uid()
        for i in range(PER_WRITER):
            ds = make_dataset(study=study)
            assert (await stow(client, [to_bytes(ds)])).status_code == 200
            if i % 3 == 2:
                url = f"/v2/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
                assert (await client.delete(url)).status_code == 204

    async def reader() -> None:
        while not done.is_set():
            snapshots.append([e["sequence"] for e in await read_all(client, limit=5)])
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done.set()
    await reading

    final = [e["sequence"] for e in await read_all(client, limit=200)]
    assert len(final) == WRITERS * (PER_WRITER + PER_WRITER // 3)
    assert final == list(range(final[0], final[0] + len(final)))  # strictly increasing, no gaps
    assert len(snapshots) >= 3
    for seen in snapshots:
        assert seen == final[: len(seen)]
    assert len({len(s) for s in snapshots}) > 1, "the reader should have polled while writers ran"


async def test_slow_committer_holds_back_later_commits(client: httpx.AsyncClient, database_url: str) -> None:
    """A transaction that has taken its sequence but not yet committed (here a raw transaction doing
    what every committing transaction does) keeps later writers from appending: readers never see a
    later sequence before it, so its entry cannot appear behind one already read."""
    import asyncpg

    from dicomlake.index.instances import CHANGEFEED_LOCK_KEY

    slow = await asyncpg.connect(database_url)
    observer = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await slow.execute("SELECT pg_advisory_xact_lock($1)", CHANGEFEED_LOCK_KEY)
        held = await slow.fetchval(
            "INSERT INTO changefeed (sequence, partition_key, study_uid, series_uid, sop_uid, action, watermark) "
            "VALUES (nextval('changefeed_seq'), 1, '1.2', '1.2.3', '1.2.3.4', 'create', 0) RETURNING sequence"
        )
        stores = [asyncio.create_task(stow(client, [to_bytes(make_dataset())])) for _ in range(3)]
        # Wait until the three stores are blocked on the lock (or, were it missing, have finished).
        while True:
            waiting = await observer.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting == 3 or all(t.done() for t in stores):
                break
            await asyncio.sleep(0.05)
        before = [e["sequence"] for e in await feed(client, includemetadata="false")]
        await tx.commit()
        assert all(r.status_code == 200 for r in await asyncio.gather(*stores))
        after = [e["sequence"] for e in await feed(client, includemetadata="false")]
        assert before == []  # nothing committed behind the slow transaction's back
        assert after[0] == held
        assert after == sorted(after)
        assert len(after) == 4
    finally:
        await slow.close()
        await observer.close()
