"""Access tiers: hot, cool and cold retrieve normally; archive, and files changed or removed behind the
service's back, answer 424 naming the instance, never a 500."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_stow import stow
from tests.factories import make_dataset, to_bytes, zero_preamble

pytestmark = pytest.mark.integration
ROOT = "AHDS/workspace/dicom/dicom/Microsoft.Default/"
ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
SINGLE = "application/dicom; transfer-syntax=*"


async def stored_instance(client: httpx.AsyncClient, blobs: AzureBlobStore) -> tuple[pydicom.Dataset, bytes, str, str]:
    ds = make_dataset()
    data = to_bytes(ds)
    assert (await stow(client, [data])).status_code == 200
    prefix = f"{ROOT}{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}_"
    (name,) = [b.name async for b in blobs.list_blobs(prefix)]
    url = f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    return ds, data, name, url


@pytest.mark.parametrize("tier", ["Hot", "Cool", "Cold"])
async def test_online_tiers_retrieve_normally(client: httpx.AsyncClient, blob_store: AzureBlobStore, tier: str) -> None:
    ds, data, name, url = await stored_instance(client, blob_store)
    await blob_store.set_tier(name, tier)
    assert (await blob_store.get_properties(name)).tier == tier
    single = await client.get(url, headers={"Accept": SINGLE})
    assert single.status_code == 200, single.text
    assert single.content == zero_preamble(data)
    study = await client.get(f"/v2/studies/{ds.StudyInstanceUID}", headers={"Accept": ANY})
    assert study.status_code == 200
    assert zero_preamble(data) in study.content
    metadata = (await client.get(url + "/metadata")).json()
    bulk = await client.get(metadata[0]["7FE00010"]["BulkDataURI"].removeprefix("http://testserver"))
    assert bulk.status_code == 200
    assert bulk.content == ds.PixelData


async def test_archive_tier_is_424_naming_the_instance(client: httpx.AsyncClient, blob_store: AzureBlobStore) -> None:
    ds, _, name, url = await stored_instance(client, blob_store)
    await blob_store.set_tier(name, "Archive")
    assert (await blob_store.get_properties(name)).tier == "Archive"
    for path, accept in (
        (url, SINGLE),
        (f"/v2/studies/{ds.StudyInstanceUID}", ANY),
        (f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}", ANY),
    ):
        response = await client.get(path, headers={"Accept": accept})
        assert response.status_code == 424, (path, response.text)
        body = response.json()
        assert body["code"] == "BlobArchived"
        assert ds.SOPInstanceUID in body["message"]
        assert "rehydrate" in body["message"]
    # Metadata comes from the index and stays available; bulk data needs the file.
    metadata = await client.get(url + "/metadata")
    assert metadata.status_code == 200
    bulk = await client.get(metadata.json()[0]["7FE00010"]["BulkDataURI"].removeprefix("http://testserver"))
    assert bulk.status_code == 424
    assert bulk.json()["code"] == "BlobArchived"
    # Rehydrated (back to an online tier): retrieves again.
    await blob_store.set_tier(name, "Cool")
    if (await blob_store.get_properties(name)).tier == "Cool":  # Azurite rehydrates at once; Azure takes hours
        assert (await client.get(url, headers={"Accept": SINGLE})).status_code == 200


async def test_file_modified_or_removed_behind_the_service(
    client: httpx.AsyncClient, blob_store: AzureBlobStore
) -> None:
    ds, data, name, url = await stored_instance(client, blob_store)
    await blob_store.upload_bytes(name, data[:200] + b"tampered" + data[208:])
    response = await client.get(url, headers={"Accept": SINGLE})
    assert response.status_code == 424
    assert response.json()["code"] == "BlobChanged"
    assert ds.SOPInstanceUID in response.json()["message"]

    ds, _, name, url = await stored_instance(client, blob_store)
    await blob_store.delete(name)
    response = await client.get(f"/v2/studies/{ds.StudyInstanceUID}", headers={"Accept": ANY})
    assert response.status_code == 424
    assert response.json()["code"] == "BlobChanged"
    # Azurite answers a conditional read of a missing blob with 412 (Azure: 404), so the message may
    # say "modified" rather than "missing"; either way the status and code are the same.
    assert ds.SOPInstanceUID in response.json()["message"]
