"""STOW-RS: statuses, failure codes, idempotency, upsert, concurrency, limits, data contract."""

from __future__ import annotations

import asyncio
import warnings

import asyncpg
import httpx
import pytest

from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from tests.factories import instance_bytes, make_dataset, multipart, new_uid, to_bytes, zero_preamble

pytestmark = pytest.mark.integration
ROOT = "AHDS/workspace/dicom/dicom/Microsoft.Default/"
DICOM_JSON = {"Accept": "application/dicom+json"}


async def stow(
    client: httpx.AsyncClient, parts: list[bytes], path: str = "/v2/studies", method: str = "POST"
) -> httpx.Response:
    body, content_type = multipart(parts)
    return await client.request(method, path, content=body, headers={"Content-Type": content_type, **DICOM_JSON})


def failed_reasons(response: httpx.Response) -> list[int]:
    return [item["00081197"]["Value"][0] for item in response.json().get("00081198", {}).get("Value", [])]


def referenced(response: httpx.Response) -> list[str]:
    return [item["00081155"]["Value"][0] for item in response.json().get("00081199", {}).get("Value", [])]


async def test_store_three_and_response_dataset(client: httpx.AsyncClient, blob_store: AzureBlobStore) -> None:
    study = new_uid()
    parts = [instance_bytes(study=study) for _ in range(3)]
    response = await stow(client, parts)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    assert list(body) == sorted(body)
    assert body["00081190"]["Value"][0].endswith(f"/v2/studies/{study}")
    items = body["00081199"]["Value"]
    assert len(items) == 3
    for item in items:
        assert item["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
        assert item["00081190"]["Value"][0].endswith(f"/instances/{item['00081155']['Value'][0]}")
    assert "00081198" not in body


async def test_file_lands_at_findable_path_with_zeroed_preamble(
    client: httpx.AsyncClient, blob_store: AzureBlobStore
) -> None:
    ds = make_dataset()
    data = to_bytes(ds, preamble=b"\x07" * 128)
    assert data[:4] == b"\x07" * 4
    assert (await stow(client, [data])).status_code == 200
    prefix = f"{ROOT}{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}_"
    blobs = [b async for b in blob_store.list_blobs(prefix)]
    assert len(blobs) == 1
    assert blobs[0].name.endswith(".dcm")
    stored = await blob_store.read_bytes(blobs[0].name)
    assert stored == zero_preamble(data)
    assert stored[:128] == bytes(128)


async def test_single_part_application_dicom(client: httpx.AsyncClient) -> None:
    data = instance_bytes()
    response = await client.post("/v2/studies", content=data, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200
    assert len(referenced(response)) == 1


async def test_unsupported_media_types(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/studies", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "multipart/related" in response.json()["message"]  # says what to send instead
    response = await client.post("/v2/studies", content=b"x")
    assert response.status_code == 415
    assert response.json()["message"] == "The request has no Content-Type."
    response = await client.post(
        "/v2/studies", content=b"x", headers={"Content-Type": 'multipart/related; type="application/json"; boundary=b'}
    )
    assert response.status_code == 415
    body, content_type = multipart([instance_bytes()])
    response = await client.post(
        "/v2/studies", content=body, headers={"Content-Type": content_type, "Accept": "application/xml"}
    )
    assert response.status_code == 406


async def test_validation_failures(client: httpx.AsyncClient) -> None:
    no_sop = make_dataset()
    del no_sop.SOPInstanceUID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UID we write on purpose
        bad_uid = make_dataset(study="1.2.03.4")
        bad_bytes = to_bytes(bad_uid)
    response = await stow(client, [to_bytes_unchecked(no_sop), bad_bytes])
    assert response.status_code == 409
    assert failed_reasons(response) == [0xA900, 0xA900]
    good = instance_bytes()
    response = await stow(client, [good, b"this is not DICOM at all" * 20])
    assert response.status_code == 202
    assert len(referenced(response)) == 1
    assert len(failed_reasons(response)) == 1


def to_bytes_unchecked(ds: object) -> bytes:
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta = meta  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)  # type: ignore[arg-type]
    return buffer.getvalue()


async def test_study_in_path_must_match(client: httpx.AsyncClient) -> None:
    response = await stow(client, [instance_bytes()], path=f"/v2/studies/{new_uid()}")
    assert response.status_code == 409
    assert failed_reasons(response) == [0xA901]
    study = new_uid()
    ok = await stow(client, [instance_bytes(study=study)], path=f"/v2/studies/{study}")
    assert ok.status_code == 200
    assert ok.json()["00081190"]["Value"][0].endswith(f"/v2/studies/{study}")


async def test_study_mismatch_code_in_azure_profile(azure_client: httpx.AsyncClient) -> None:
    response = await stow(azure_client, [instance_bytes()], path=f"/v2/studies/{new_uid()}")
    assert response.status_code == 409
    assert failed_reasons(response) == [0xA900]


async def test_identical_retry_is_idempotent_in_standard_profile(client: httpx.AsyncClient) -> None:
    data = instance_bytes()
    assert (await stow(client, [data])).status_code == 200
    again = await stow(client, [data])
    assert again.status_code == 200
    assert len(referenced(again)) == 1
    ds = make_dataset()
    first = to_bytes(ds)
    ds.PatientName = "Other^Name"
    different = to_bytes(ds)
    assert (await stow(client, [first])).status_code == 200
    conflict = await stow(client, [different])
    assert conflict.status_code == 409
    assert failed_reasons(conflict) == [45070]


async def test_azure_profile_restore_conflicts(azure_client: httpx.AsyncClient) -> None:
    data = instance_bytes()
    assert (await stow(azure_client, [data])).status_code == 200
    again = await stow(azure_client, [data])
    assert again.status_code == 409
    assert failed_reasons(again) == [45070]
    twice = instance_bytes()
    response = await stow(azure_client, [twice, twice])
    assert response.status_code == 202
    assert failed_reasons(response) == [45070]


async def test_empty_multipart(client: httpx.AsyncClient, azure_client: httpx.AsyncClient) -> None:
    body, content_type = multipart([])
    headers = {"Content-Type": content_type}
    assert (await client.post("/v2/studies", content=body, headers=headers)).status_code == 400
    assert (await azure_client.post("/v2/studies", content=body, headers=headers)).status_code == 204


async def test_malformed_multipart(client: httpx.AsyncClient) -> None:
    body, content_type = multipart([instance_bytes()])
    truncated = body[: -len("--dicomlake-test-boundary--\r\n")]
    response = await client.post("/v2/studies", content=truncated, headers={"Content-Type": content_type})
    assert response.status_code == 400
    response = await client.post(
        "/v2/studies", content=body, headers={"Content-Type": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 400
    assert (await client.get("/health/ready")).status_code == 200


async def test_preamble_and_epilogue_tolerated(client: httpx.AsyncClient) -> None:
    body, content_type = multipart([instance_bytes()], preamble=b"This is a preamble.\r\n")
    body += b"epilogue text"
    response = await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200


async def test_put_upserts_and_old_blob_is_removed(
    client: httpx.AsyncClient, blob_store: AzureBlobStore, settings: object, database_url: str
) -> None:
    ds = make_dataset()
    first = to_bytes(ds)
    assert (await stow(client, [first])).status_code == 200
    ds.PatientName = "Changed^Name"
    second = to_bytes(ds)
    assert (await stow(client, [second], method="PUT")).status_code == 200
    url = f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    got = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert got.content == zero_preamble(second)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await Janitor(pool, blob_store).run_once()
        actions = [r["action"] for r in await pool.fetch("SELECT action FROM changefeed ORDER BY sequence")]
    finally:
        await pool.close()
    assert actions == ["create", "update"]
    prefix = f"{ROOT}{ds.StudyInstanceUID}/"
    assert len([b async for b in blob_store.list_blobs(prefix)]) == 1


async def test_concurrent_same_sop_commits_exactly_once(client: httpx.AsyncClient, database_url: str) -> None:
    ds = make_dataset(rows=256, columns=256)
    variants = []
    for i in range(8):
        ds.PatientName = f"Variant^{i}"
        variants.append(to_bytes(ds))
    responses = await asyncio.gather(*(stow(client, [v]) for v in variants))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert statuses.count(409) == 7
    for r in responses:
        if r.status_code == 409:
            assert failed_reasons(r)[0] in (45070, 45071)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM instances WHERE status = 2") == 1
        assert await conn.fetchval("SELECT count(*) FROM instances WHERE status = 1") == 0
    finally:
        await conn.close()
