"""HTTP Range on single-part retrieves: instance as stored and bulk data (RFC 9110 §14)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_frames import store, url_of
from tests.factories import make_dataset, parse_multipart, to_bytes, zero_preamble

pytestmark = pytest.mark.integration
SINGLE = {"Accept": "application/dicom; transfer-syntax=*"}


async def test_instance_ranges(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=64, columns=64)
    data = zero_preamble(to_bytes(ds))
    await store(client, data)
    url = url_of(ds)
    size = len(data)

    full = await client.get(url, headers=SINGLE)
    assert full.status_code == 200
    assert full.headers["accept-ranges"] == "bytes"
    etag = full.headers["etag"]

    for header, (start, end) in {
        "bytes=0-131": (0, 131),
        "bytes=1000-": (1000, size - 1),
        "bytes=-100": (size - 100, size - 1),
        f"bytes=10-{size + 500}": (10, size - 1),
    }.items():
        response = await client.get(url, headers={**SINGLE, "Range": header})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert response.content == data[start : end + 1]
        assert int(response.headers["content-length"]) == end - start + 1

    multi = await client.get(url, headers={**SINGLE, "Range": "bytes=0-9, 200-299"})
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert int(multi.headers["content-length"]) == len(multi.content)
    parts = parse_multipart(multi.content, multi.headers["content-type"])
    assert [h["content-range"] for h, _ in parts] == [f"bytes 0-9/{size}", f"bytes 200-299/{size}"]
    assert [body for _, body in parts] == [data[0:10], data[200:300]]

    unsatisfiable = await client.get(url, headers={**SINGLE, "Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"

    # Malformed or unknown units are ignored (whole file, 200); so is If-Range with another ETag.
    for header in ("bytes=abc", "items=0-1", "bytes=5-1"):
        response = await client.get(url, headers={**SINGLE, "Range": header})
        assert response.status_code == 200, header
        assert response.content == data
    stale = await client.get(url, headers={**SINGLE, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200
    fresh = await client.get(url, headers={**SINGLE, "Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206


async def test_bulk_data_ranges(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=32, columns=32)
    await store(client, to_bytes(ds))
    url = url_of(ds) + "/bulkdata/7FE00010"
    pixels = bytes(ds.PixelData)
    full = await client.get(url)
    assert full.status_code == 200
    assert full.content == pixels
    assert full.headers["accept-ranges"] == "bytes"
    response = await client.get(url, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == pixels[100:200]
    assert response.headers["content-range"] == f"bytes 100-199/{len(pixels)}"
    assert (await client.get(url, headers={"Range": f"bytes={len(pixels)}-"})).status_code == 416


def _bulk_uris(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["BulkDataURI"]] if "BulkDataURI" in node else []
        return found + [u for value in node.values() for u in _bulk_uris(value)]
    if isinstance(node, list):
        return [u for item in node for u in _bulk_uris(item)]
    return []


async def test_every_bulk_data_uri_of_every_sample_resolves(client: httpx.AsyncClient) -> None:
    import warnings
    from io import BytesIO

    import pydicom

    from tests.api.test_frames import SAMPLES, _sample_ids
    from tests.factories import multipart

    for name in _sample_ids():
        data = (SAMPLES / name).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(BytesIO(data))
        body, content_type = multipart([data])
        # The samples share SOP Instance UIDs: PUT replaces.
        response = await client.put("/v2/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (200, 202), name
        metadata = (await client.get(url_of(ds) + "/metadata")).json()
        uris = _bulk_uris(metadata)
        assert uris, name
        for uri in uris:
            got = await client.get(uri)
            assert got.status_code == 200, (name, uri)
            if uri.endswith("/bulkdata/7FE00010"):
                assert got.content == bytes(ds.PixelData), name
