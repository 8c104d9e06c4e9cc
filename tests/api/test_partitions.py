"""Data partitions: listing, creation by first store, names, file paths, and isolation of the same
UIDs across partitions for store, retrieve, metadata, bulk data, delete and change feed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_stow import stow
from tests.factories import make_dataset, to_bytes, zero_preamble

pytestmark = pytest.mark.integration
SERVICE_ROOT = "AHDS/workspace/dicom/dicom/"
ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
SINGLE = "application/dicom; transfer-syntax=*"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as p:
        yield p


def base(partition: str | None) -> str:
    return "/v2" if partition is None else f"/v2/partitions/{partition}"


async def test_list_create_by_first_store_and_names(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/partitions")
    assert response.status_code == 200
    assert [p["partitionName"] for p in response.json()] == ["Microsoft.Default"]
    assert set(response.json()[0]) == {"partitionKey", "partitionName", "createdDate"}
    assert response.json()[0]["createdDate"].endswith("Z")

    # Reads and deletes in an unknown partition do not create it.
    assert (await client.get("/v2/partitions/site-a/studies/1.2.3/metadata")).status_code == 404
    assert (await client.delete("/v2/partitions/site-a/studies/1.2.3")).status_code == 404
    assert (await client.get("/v2/partitions/site-a/changefeed")).status_code == 404
    assert len((await client.get("/v2/partitions")).json()) == 1

    longest = "a" * 64
    for name in ("site-a", "Site_B.2", longest):
        assert (
            await stow(client, [to_bytes(make_dataset())], path=f"/v2/partitions/{name}/studies")
        ).status_code == 200
    names = [p["partitionName"] for p in (await client.get("/v2/partitions")).json()]
    assert names == ["Microsoft.Default", "site-a", "Site_B.2", longest]
    assert (await client.get("/v2/partitions/site-a/changefeed")).status_code == 200

    for bad in ("a" * 65, "bad%20name", "bad%2Fname", "bad*name", "%C3%A9t%C3%A9"):
        response = await stow(client, [to_bytes(make_dataset())], path=f"/v2/partitions/{bad}/studies")
        assert response.status_code in (400, 404), bad  # %2F cannot even reach the route
        if response.status_code == 400:
            assert response.json()["code"] == "InvalidPartitionName"
    assert (
        await stow(client, [to_bytes(make_dataset())], path=f"/v2/partitions/{'a' * 65}/studies")
    ).status_code == 400
    assert len((await client.get("/v2/partitions")).json()) == 4


async def test_same_uids_in_two_partitions_are_independent(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool
) -> None:
    ds = make_dataset()
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    stored: dict[str | None, bytes] = {}
    for partition, patient in ((None, "DEFAULT"), ("site-a", "A"), ("site-b", "B")):
        ds.PatientID = patient
        stored[partition] = to_bytes(ds)
        response = await stow(client, [stored[partition]], path=f"{base(partition)}/studies")
        assert response.status_code == 200, response.text
        # The response's URLs point into the partition.
        assert response.json()["00081190"]["Value"][0].endswith(f"{base(partition)}/studies/{study}")

    # Files go to AHDS/{workspace}/dicom/{service}/{partition}/.
    for partition in ("Microsoft.Default", "site-a", "site-b"):
        names = [b.name async for b in blob_store.list_blobs(f"{SERVICE_ROOT}{partition}/{study}/{series}/{sop}_")]
        assert len(names) == 1, partition

    instance = f"/studies/{study}/series/{series}/instances/{sop}"
    for partition, patient in ((None, "DEFAULT"), ("site-a", "A"), ("site-b", "B")):
        # Retrieve: each partition returns its own bytes.
        response = await client.get(base(partition) + instance, headers={"Accept": SINGLE})
        assert response.status_code == 200
        assert response.content == zero_preamble(stored[partition])
        study_response = await client.get(f"{base(partition)}/studies/{study}", headers={"Accept": ANY})
        assert study_response.status_code == 200
        assert zero_preamble(stored[partition]) in study_response.content
        # Metadata and bulk data.
        metadata = (await client.get(base(partition) + instance + "/metadata")).json()
        assert [m["00100020"]["Value"] for m in metadata] == [[patient]]
        bulk = metadata[0]["7FE00010"]["BulkDataURI"]
        assert f"{base(partition)}{instance}/bulkdata/" in bulk
        assert (await client.get(bulk.removeprefix("http://testserver"))).status_code == 200
        # Change feed: only this partition's entry.
        entries = (await client.get(f"{base(partition)}/changefeed")).json()
        assert len(entries) == 1
        assert entries[0]["partitionName"] == (partition or "Microsoft.Default")
        assert entries[0]["metadata"]["00100020"]["Value"] == [patient]
        assert entries[0]["filePath"].startswith(f"{SERVICE_ROOT}{partition or 'Microsoft.Default'}/")
        latest = (await client.get(f"{base(partition)}/changefeed/latest")).json()
        assert latest["sequence"] == entries[0]["sequence"]

    # Upsert in one partition does not touch the others.
    ds.PatientID = "A2"
    assert (await stow(client, [to_bytes(ds)], path="/v2/partitions/site-a/studies", method="PUT")).status_code == 200
    assert (await client.get("/v2/partitions/site-b" + instance + "/metadata")).json()[0]["00100020"]["Value"] == ["B"]
    assert [e["action"] for e in (await client.get("/v2/partitions/site-b/changefeed")).json()] == ["create"]

    # Delete in one partition, at each level, leaves the others intact.
    assert (await client.delete("/v2/partitions/site-a" + instance)).status_code == 204
    assert (await client.get("/v2/partitions/site-a" + instance)).status_code == 404
    assert (await client.delete(f"/v2/partitions/site-b/studies/{study}/series/{series}")).status_code == 204
    assert (await client.get(f"/v2/partitions/site-b/studies/{study}/metadata")).status_code == 404
    assert (await client.get(base(None) + instance, headers={"Accept": SINGLE})).content == zero_preamble(stored[None])
    assert (await client.delete("/v2/partitions/site-a" + f"/studies/{study}")).status_code == 404
    await Janitor(pool, blob_store).run_once()
    for partition, remaining in (("Microsoft.Default", 1), ("site-a", 0), ("site-b", 0)):
        names = [b.name async for b in blob_store.list_blobs(f"{SERVICE_ROOT}{partition}/{study}/")]
        assert len(names) == remaining, partition
    actions = {
        p: [e["action"] for e in (await client.get(f"{base(p)}/changefeed")).json()] for p in (None, "site-a", "site-b")
    }
    assert actions == {None: ["create"], "site-a": ["create", "update", "delete"], "site-b": ["create", "delete"]}
    # Deleting the default partition's copy works through the unpartitioned route only.
    assert (await client.delete(f"/v2/studies/{study}")).status_code == 204
    assert (await client.get(f"/v2/studies/{study}/metadata")).status_code == 404


async def test_search_is_partition_scoped(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    for partition, patient in ((None, "DEFAULT"), ("site-a", "A"), ("site-b", "B")):
        ds.PatientID = patient
        assert (await stow(client, [to_bytes(ds)], path=f"{base(partition)}/studies")).status_code == 200

    async def found(partition: str | None, path: str, **params: str) -> list[str]:
        response = await client.get(base(partition) + path, params=params)
        assert response.status_code in (200, 204), response.text
        if response.status_code == 204:
            return []
        return [item["00100020"]["Value"][0] for item in response.json() if "00100020" in item]

    for partition, patient in ((None, "DEFAULT"), ("site-a", "A"), ("site-b", "B")):
        assert await found(partition, "/studies", StudyInstanceUID=study) == [patient]
        assert await found(partition, "/studies", PatientID=patient) == [patient]
        assert len((await client.get(f"{base(partition)}/studies/{study}/series")).json()) == 1
        instances = await client.get(f"{base(partition)}/instances", params={"SOPInstanceUID": sop})
        assert len(instances.json()) == 1
    assert await found("site-a", "/studies", PatientID="B") == []
    assert await found(None, "/studies", PatientID="A") == []
    assert (await client.get("/v2/partitions/nowhere/studies")).status_code == 404

    # A delete in one partition removes it from that partition's search only.
    assert (await client.delete(f"/v2/partitions/site-a/studies/{study}/series/{series}")).status_code == 204
    assert await found("site-a", "/studies", StudyInstanceUID=study) == []
    assert await found("site-b", "/studies", StudyInstanceUID=study) == ["B"]
    assert await found(None, "/studies", StudyInstanceUID=study) == ["DEFAULT"]
