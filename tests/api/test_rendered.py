"""Rendered images and thumbnails, checked by content (decoded pixels), not just by media type."""

from __future__ import annotations

import io
import warnings

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from dicomlake.storage.blob_store import AzureBlobStore
from tests.api.test_frames import SAMPLES, store, url_of
from tests.factories import make_dataset, multipart, to_bytes

pytestmark = pytest.mark.integration
PNG = {"Accept": "image/png"}


def png_pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def gradient_ct(**kwargs: object) -> pydicom.Dataset:
    ds = make_dataset(rows=64, columns=64, **kwargs)  # type: ignore[arg-type]
    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype("<u2")
    ds.PixelData = arr.tobytes()
    return ds


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    out = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    return np.rint(out).astype(np.uint8)


async def test_grayscale_windowing_and_inversion(client: httpx.AsyncClient) -> None:
    ds = gradient_ct()
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = 0
    ds.WindowWidth = 2000
    await store(client, to_bytes(ds))
    values = np.frombuffer(ds.PixelData, "<u2").reshape(64, 64).astype(np.float64) - 1024
    url = url_of(ds) + "/rendered"

    # The data set's window when none is asked.
    assert np.array_equal(png_pixels(await client.get(url, headers=PNG)), linear_window(values, 0, 2000))
    # An explicit window wins.
    explicit = png_pixels(await client.get(url + "?window=500,1000,linear", headers=PNG))
    assert np.array_equal(explicit, linear_window(values, 500, 1000))
    # JPEG by default, close to the PNG (lossy).
    jpeg = await client.get(url)
    assert jpeg.headers["content-type"] == "image/jpeg"
    decoded = np.asarray(Image.open(io.BytesIO(jpeg.content))).astype(int)
    assert np.abs(decoded - linear_window(values, 0, 2000)).mean() < 3

    inverted = gradient_ct()
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.WindowCenter = 2048
    inverted.WindowWidth = 4096
    await store(client, to_bytes(inverted))
    raw = np.frombuffer(inverted.PixelData, "<u2").reshape(64, 64).astype(np.float64)
    got = png_pixels(await client.get(url_of(inverted) + "/rendered", headers=PNG))
    assert np.array_equal(got, 255 - linear_window(raw, 2048, 4096))


async def test_rendering_parameters_and_errors(client: httpx.AsyncClient) -> None:
    ds = gradient_ct(frames=1)
    await store(client, to_bytes(ds))
    url = url_of(ds) + "/rendered"
    small = png_pixels(await client.get(url + "?viewport=32,16", headers=PNG))
    assert small.shape == (16, 16)  # fitted into 32 x 16, aspect kept
    crop = png_pixels(await client.get(url + "?viewport=10,10,0,0,10,10&window=2048,4096", headers=PNG))
    full = png_pixels(await client.get(url + "?window=2048,4096", headers=PNG))
    assert np.array_equal(crop, full[:10, :10])
    q_low = await client.get(url + "?quality=5")
    q_high = await client.get(url + "?quality=100")
    assert len(q_low.content) < len(q_high.content)
    for bad in ("quality=0", "quality=x", "viewport=0,10", "window=1", "window=1,0", "window=1,2,cubic"):
        response = await client.get(f"{url}?{bad}")
        assert response.status_code == 400, bad
    assert (await client.get(url, headers={"Accept": "image/gif"})).status_code == 406
    no_pixels = make_dataset()
    del no_pixels.PixelData
    await store(client, to_bytes(no_pixels))
    assert (await client.get(url_of(no_pixels) + "/rendered")).status_code == 404


async def test_multiframe_renders_first_or_named_frame(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=8, columns=8, frames=3)
    frames = np.stack([np.full((8, 8), v, dtype="<u2") for v in (0, 2000, 4000)])
    frames[:, 0, 0] = 4095  # keep a full range in every frame
    frames[:, 0, 1] = 0
    ds.PixelData = frames.tobytes()
    await store(client, to_bytes(ds))
    window = "?window=2048,4096"
    first = png_pixels(await client.get(url_of(ds) + "/rendered" + window, headers=PNG))
    third = png_pixels(await client.get(url_of(ds) + "/frames/3/rendered" + window, headers=PNG))
    assert first[4, 4] == linear_window(np.array([0.0]), 2048, 4096)[0]
    assert third[4, 4] == linear_window(np.array([4000.0]), 2048, 4096)[0]
    assert (await client.get(url_of(ds) + "/frames/1,2/rendered")).status_code == 400
    assert (await client.get(url_of(ds) + "/frames/4/rendered")).status_code == 404


async def test_colour_and_palette(client: httpx.AsyncClient) -> None:
    for name, lossless in (("ExplicitVRLittleEndian.dcm", True), ("JPEGProcess1.dcm", False)):
        data = (SAMPLES / name).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = pydicom.dcmread(io.BytesIO(data))
            expected = source.pixel_array.astype(int)
        body, content_type = multipart([data])
        # The samples share one SOP Instance UID: PUT replaces the previous one.
        response = await client.put("/v2/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (200, 202)
        got = png_pixels(await client.get(url_of(source) + "/rendered", headers=PNG)).astype(int)
        if lossless:
            assert np.array_equal(got, expected)
        else:
            assert np.abs(got - expected).mean() < 2

    ds = make_dataset(rows=16, columns=16)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    indexes = (np.arange(256, dtype=np.uint8)).reshape(16, 16)
    ds.PixelData = indexes.tobytes()
    lut = np.arange(256, dtype="<u2")
    ds.RedPaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.GreenPaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.BluePaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.RedPaletteColorLookupTableData = (lut * 257).astype("<u2").tobytes()
    ds.GreenPaletteColorLookupTableData = ((255 - lut) * 257).astype("<u2").tobytes()
    ds.BluePaletteColorLookupTableData = np.full(256, 128 * 257, dtype="<u2").tobytes()
    await store(client, to_bytes(ds))
    got = png_pixels(await client.get(url_of(ds) + "/rendered", headers=PNG))
    assert got.shape == (16, 16, 3)
    assert np.array_equal(got[..., 0], indexes)
    assert np.array_equal(got[..., 1], 255 - indexes)
    assert (got[..., 2] == 128).all()


async def test_thumbnails_cached_in_the_lake(client: httpx.AsyncClient, blob_store: AzureBlobStore) -> None:
    study = make_dataset().StudyInstanceUID
    series = make_dataset().SeriesInstanceUID
    datasets = [make_dataset(study=study, series=series, rows=300, columns=200) for _ in range(3)]
    for ds in datasets:
        await store(client, to_bytes(ds))
    url = url_of(datasets[0]) + "/thumbnail"
    first = await client.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(first.content))
    assert max(image.size) == 128
    assert image.size[1] > image.size[0]
    cached = [b.name async for b in blob_store.list_blobs("AHDS/") if b.name.endswith(".thumbnail.jpg")]
    assert len(cached) == 1
    assert cached[0].endswith(f"/{study}/{series}/{datasets[0].SOPInstanceUID}_" + cached[0].split("_")[-1])
    # The second request is served from the cached blob (replace it to prove it).
    marker = Image.new("L", (3, 3), 7)
    buffer = io.BytesIO()
    marker.save(buffer, format="JPEG")
    await blob_store.upload_bytes(cached[0], buffer.getvalue())
    assert (await client.get(url)).content == buffer.getvalue()
    # Study and series thumbnails: the middle instance's (rendered and cached too); frame thumbnails.
    for level in (f"/v2/studies/{study}", f"/v2/studies/{study}/series/{series}"):
        response = await client.get(level + "/thumbnail")
        assert response.status_code == 200
        assert max(Image.open(io.BytesIO(response.content)).size) == 128
    frame = await client.get(url_of(datasets[1]) + "/frames/1/thumbnail", headers=PNG)
    assert frame.headers["content-type"] == "image/png"
    assert (await client.get(f"/v2/studies/{make_dataset().StudyInstanceUID}/thumbnail")).status_code == 404
