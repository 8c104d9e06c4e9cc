"""JSON answers are gzipped for clients that accept it; DICOM bytes never are."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from tests.api.test_stow import stow
from tests.factories import make_dataset, to_bytes, zero_preamble

pytestmark = pytest.mark.integration


async def test_metadata_gzipped_and_files_untouched(client: httpx.AsyncClient) -> None:
    study = make_dataset().StudyInstanceUID
    datasets = [make_dataset(study=study) for _ in range(5)]
    assert (await stow(client, [to_bytes(ds) for ds in datasets])).status_code == 200
    url = f"/v2/studies/{study}/metadata"
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    async with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in response.headers["vary"].lower()
    assert orjson.loads(gzip.decompress(raw)) == plain.json()
    # Search answers too.
    searched = await client.get("/v2/studies", params={"StudyInstanceUID": study}, headers={"Accept-Encoding": "gzip"})
    assert searched.status_code == 200
    # A DICOM file is sent as stored, whatever the client accepts.
    ds = datasets[0]
    instance = f"/v2/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    got = await client.get(
        instance, headers={"Accept-Encoding": "gzip", "Accept": "application/dicom; transfer-syntax=*"}
    )
    assert "content-encoding" not in got.headers
    assert got.content == zero_preamble(to_bytes(ds))
    # Small JSON bodies are not worth it.
    live = await client.get("/health/live", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in live.headers
