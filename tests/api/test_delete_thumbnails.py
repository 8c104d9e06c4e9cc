"""Deleting an instance removes its cached thumbnail from the lake too (no orphan files)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_stow import stow
from tests.factories import make_dataset, to_bytes

pytestmark = pytest.mark.integration


async def test_delete_removes_cached_thumbnail(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, database_url: str
) -> None:
    ds = make_dataset(rows=64, columns=64)
    assert (await stow(client, [to_bytes(ds)])).status_code == 200
    url = f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert (await client.get(url + "/thumbnail")).status_code == 200
    prefix = f"AHDS/workspace/dicom/dicom/Microsoft.Default/{ds.StudyInstanceUID}/"
    names = sorted([b.name async for b in blob_store.list_blobs(prefix)])
    assert len(names) == 2
    assert names[1].endswith(".thumbnail.jpg")
    assert (await client.delete(url)).status_code == 204
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await Janitor(pool, blob_store).run_once()
    finally:
        await pool.close()
    assert [b.name async for b in blob_store.list_blobs(prefix)] == []
