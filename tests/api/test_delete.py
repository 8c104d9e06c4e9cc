"""DELETE at study, series and instance level: statuses, one index transaction, blobs removed by the
janitor, and a store in flight that commits after a delete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from dicomlake.index.instances import InstanceIndex, InstanceKey
from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout
from tests.api.test_stow import stow
from tests.factories import make_dataset, new_uid, to_bytes

pytestmark = pytest.mark.integration
ROOT = "AHDS/workspace/dicom/dicom/Microsoft.Default/"
ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


async def blob_names(blobs: AzureBlobStore, prefix: str) -> list[str]:
    return sorted([b.name async for b in blobs.list_blobs(prefix)])


async def store_study(client: httpx.AsyncClient, series_count: int = 2, per_series: int = 2) -> tuple[str, list[str]]:
    study = new_uid()
    series = [new_uid() for _ in range(series_count)]
    datasets = [make_dataset(study=study, series=s) for s in series for _ in range(per_series)]
    assert (await stow(client, [to_bytes(ds) for ds in datasets])).status_code == 200
    return study, [ds.SOPInstanceUID for ds in datasets]


async def test_delete_instance_series_study(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool
) -> None:
    study, _ = await store_study(client)
    series_uids = [r["series_uid"] for r in await pool.fetch("SELECT DISTINCT series_uid FROM instances")]
    first_series = sorted(series_uids)[0]
    second_series = sorted(series_uids)[1]
    in_first = [
        r["sop_uid"] for r in await pool.fetch("SELECT sop_uid FROM instances WHERE series_uid = $1", first_series)
    ]
    assert len(await blob_names(blob_store, ROOT + study)) == 4

    # Instance level.
    url = f"/v2/studies/{study}/series/{first_series}/instances/{in_first[0]}"
    response = await client.delete(url)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert (await client.get(url)).status_code == 404
    assert (await client.get(url + "/metadata")).status_code == 404
    assert len((await client.get(f"/v2/studies/{study}/metadata")).json()) == 3
    # The blob is still there until the janitor drains the queue, which holds it.
    assert len(await blob_names(blob_store, ROOT + study)) == 4
    assert await pool.fetchval("SELECT count(*) FROM deletion_queue WHERE reason = 'deleted'") == 1
    result = await Janitor(pool, blob_store).run_once()
    assert result.blobs_deleted == 1
    remaining = await blob_names(blob_store, ROOT + study)
    assert len(remaining) == 3
    assert not any(f"/{in_first[0]}_" in name for name in remaining)
    assert await pool.fetchval("SELECT count(*) FROM deletion_queue") == 0

    # Series level: the other series is untouched.
    assert (await client.delete(f"/v2/studies/{study}/series/{first_series}")).status_code == 204
    assert (await client.get(f"/v2/studies/{study}/series/{first_series}", headers={"Accept": ANY})).status_code == 404
    assert (await client.get(f"/v2/studies/{study}/series/{second_series}/metadata")).status_code == 200
    await Janitor(pool, blob_store).run_once()
    assert await blob_names(blob_store, f"{ROOT}{study}/{first_series}/") == []
    assert len(await blob_names(blob_store, f"{ROOT}{study}/{second_series}/")) == 2

    # Study level.
    assert (await client.delete(f"/v2/studies/{study}")).status_code == 204
    assert (await client.get(f"/v2/studies/{study}", headers={"Accept": ANY})).status_code == 404
    assert (await client.get(f"/v2/studies/{study}/metadata")).status_code == 404
    await Janitor(pool, blob_store).run_once()
    assert await blob_names(blob_store, ROOT + study) == []
    assert await pool.fetchval("SELECT count(*) FROM instances") == 0
    # One change-feed delete row per instance, after the creates, in sequence order.
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM changefeed ORDER BY sequence")]
    assert actions == ["create"] * 4 + ["delete"] * 4


async def test_delete_not_found_and_invalid(client: httpx.AsyncClient) -> None:
    study, _ = await store_study(client, series_count=1, per_series=1)
    assert (await client.delete(f"/v2/studies/{new_uid()}")).status_code == 404
    response = await client.delete(f"/v2/studies/{study}/series/{new_uid()}")
    assert response.status_code == 404
    assert response.json()["code"] == "SeriesNotFound"
    assert (await client.delete(f"/v2/studies/{study}/series/{new_uid()}/instances/{new_uid()}")).status_code == 404
    assert (await client.delete("/v2/studies/not-a-uid")).status_code == 400
    assert (await client.delete(f"/v2/studies/{study}/series/1.02.3")).status_code == 400
    assert (await client.delete(f"/v2/studies/{study}/series/1.2.3/instances/x")).status_code == 400
    assert (await client.delete(f"/v2/partitions/unknown/studies/{study}")).status_code == 404
    assert (await client.delete(f"/v2/partitions/bad%20name/studies/{study}")).status_code == 400
    # Deleting twice: the second finds nothing.
    assert (await client.delete(f"/v2/studies/{study}")).status_code == 204
    assert (await client.delete(f"/v2/studies/{study}")).status_code == 404


async def test_store_in_flight_commits_after_study_delete(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool
) -> None:
    """Semantics: a delete removes what is committed when it commits; a store in flight (pending row)
    is not touched and, committing later, makes its instance exist again as a later ``create``."""
    study, _ = await store_study(client, series_count=1, per_series=2)
    index = InstanceIndex(pool)
    layout = LakeLayout("workspace", "dicom")
    ds = make_dataset(study=study)
    key = InstanceKey("Microsoft.Default", study, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    partition_key = await index.partition_key("Microsoft.Default", create=False)
    assert partition_key is not None
    reservation = await index.reserve(
        partition_key,
        key,
        sop_class_uid=ds.SOPClassUID,
        blob_name_for=lambda w: layout.instance_blob(
            "Microsoft.Default", study, ds.SeriesInstanceUID, ds.SOPInstanceUID, w
        ),
    )
    data = to_bytes(ds)
    info = await blob_store.upload_bytes(reservation.blob_name, data)

    # The delete runs while the store is between upload and commit.
    assert (await client.delete(f"/v2/studies/{study}")).status_code == 204
    assert (await client.get(f"/v2/studies/{study}/metadata")).status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM instances WHERE status = 1") == 1

    await index.commit(
        reservation,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        size=len(data),
        sha256=b"\0" * 32,
        blob_etag=info.etag,
        metadata={},
        bulk={},
        pixel_data=None,
        replace=False,
    )
    await Janitor(pool, blob_store).run_once()
    # Index and lake agree: exactly the late instance exists, with its file.
    rows = await pool.fetch("SELECT sop_uid, blob_name FROM instances WHERE status = 2")
    assert [r["sop_uid"] for r in rows] == [ds.SOPInstanceUID]
    assert await blob_names(blob_store, ROOT + study) == [rows[0]["blob_name"]]
    response = await client.get(f"/v2/studies/{study}", headers={"Accept": ANY})
    assert response.status_code == 200
    # The change feed shows the late create after the deletes.
    feed = [
        (r["action"], r["sop_uid"])
        for r in await pool.fetch("SELECT action, sop_uid FROM changefeed ORDER BY sequence")
    ]
    assert [a for a, _ in feed] == ["create", "create", "delete", "delete", "create"]
    assert feed[-1][1] == ds.SOPInstanceUID


async def test_stow_after_delete_recreates(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, pool: asyncpg.Pool
) -> None:
    ds = make_dataset()
    data = to_bytes(ds)
    assert (await stow(client, [data])).status_code == 200
    assert (await client.delete(f"/v2/studies/{ds.StudyInstanceUID}")).status_code == 204
    assert (await stow(client, [data])).status_code == 200
    await Janitor(pool, blob_store).run_once()
    names = await blob_names(blob_store, ROOT + ds.StudyInstanceUID)
    assert len(names) == 1
    assert names == [await pool.fetchval("SELECT blob_name FROM instances")]
    assert (await client.get(f"/v2/studies/{ds.StudyInstanceUID}/metadata")).status_code == 200
