"""WADO-RS: instances (single and multipart), metadata (ETag, bulk data URIs), errors."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from tests.api.test_stow import stow
from tests.factories import make_dataset, new_uid, parse_multipart, to_bytes, zero_preamble

pytestmark = pytest.mark.integration
ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


async def _store_study(client: httpx.AsyncClient) -> tuple[str, list[pydicom.Dataset], list[bytes]]:
    study = new_uid()
    series_a, series_b = new_uid(), new_uid()
    datasets = [make_dataset(study=study, series=s) for s in (series_a, series_a, series_b)]
    data = [to_bytes(ds) for ds in datasets]
    assert (await stow(client, data)).status_code == 200
    return study, datasets, data


async def test_retrieve_study_series_instance(client: httpx.AsyncClient) -> None:
    study, datasets, data = await _store_study(client)
    response = await client.get(f"/v2/studies/{study}", headers={"Accept": ANY})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert int(response.headers["content-length"]) == len(response.content)
    parts = parse_multipart(response.content, response.headers["content-type"])
    assert sorted(p for _, p in parts) == sorted(zero_preamble(d) for d in data)
    assert all(h["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1" for h, _ in parts)

    series = datasets[0].SeriesInstanceUID
    response = await client.get(f"/v2/studies/{study}/series/{series}", headers={"Accept": ANY})
    assert len(parse_multipart(response.content, response.headers["content-type"])) == 2

    ds = datasets[2]
    url = f"/v2/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    single = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.status_code == 200
    assert single.headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert single.content == zero_preamble(data[2])
    # Explicit VR Little Endian is the default transfer syntax, and what these files are stored in.
    assert (await client.get(url, headers={"Accept": "application/dicom"})).content == zero_preamble(data[2])
    # No Accept header at all: as stored, single part for an instance.
    assert (await client.get(url)).content == zero_preamble(data[2])


async def test_accept_negotiation(client: httpx.AsyncClient) -> None:
    study, datasets, _ = await _store_study(client)
    not_stored = "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
    ds = datasets[0]
    url = f"/v2/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert (await client.get(url, headers={"Accept": not_stored})).status_code == 406
    # Several ranges with q-values: the satisfiable one wins.
    response = await client.get(url, headers={"Accept": f"{not_stored}; q=1, {ANY}; q=0.5"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    # A single part is only for one instance.
    assert (await client.get(f"/v2/studies/{study}", headers={"Accept": "application/dicom"})).status_code == 406
    assert (await client.get(f"/v2/studies/{study}", headers={"Accept": "image/png"})).status_code == 406


async def test_not_found_and_bad_uids(client: httpx.AsyncClient) -> None:
    study, datasets, _ = await _store_study(client)
    ds = datasets[0]
    assert (await client.get(f"/v2/studies/{new_uid()}", headers={"Accept": ANY})).status_code == 404
    assert (await client.get(f"/v2/studies/{study}/series/{new_uid()}", headers={"Accept": ANY})).status_code == 404
    missing = f"/v2/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{new_uid()}"
    assert (await client.get(missing)).status_code == 404
    assert (await client.get(missing + "/metadata")).status_code == 404
    assert (await client.get("/v2/studies/not-a-uid", headers={"Accept": ANY})).status_code == 400
    assert (await client.get("/v2/partitions/nope/studies/1.2.3", headers={"Accept": ANY})).status_code == 404


async def test_metadata_etag_and_bulk_data(client: httpx.AsyncClient) -> None:
    study, datasets, _ = await _store_study(client)
    response = await client.get(f"/v2/studies/{study}/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    items = response.json()
    assert len(items) == 3
    by_sop = {item["00080018"]["Value"][0]: item for item in items}
    for ds in datasets:
        item = by_sop[ds.SOPInstanceUID]
        assert item["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
        pixel = item["7FE00010"]
        assert pixel["vr"] in ("OW", "OB")
        bulk = await client.get(pixel["BulkDataURI"])
        assert bulk.status_code == 200
        assert bulk.content == ds.PixelData
    etag = response.headers["etag"]
    cached = await client.get(f"/v2/studies/{study}/metadata", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""


async def test_azure_profile_omits_binary_metadata(azure_client: httpx.AsyncClient) -> None:
    study, _, _ = await _store_study(azure_client)
    items = (await azure_client.get(f"/v2/studies/{study}/metadata")).json()
    assert all("7FE00010" not in item for item in items)
    assert all("00100010" in item for item in items)
