"""WADO-RS frames: native and encapsulated (BOT, no BOT, multi-fragment, Extended Offset Table), media
types and transfer syntaxes, every sample file, errors, and instances stored without a frame index."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.pixels import get_encoder
from pydicom.uid import UID

from tests.api.test_stow import stow
from tests.factories import make_dataset, multipart, parse_multipart, to_bytes

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "dicom-samples"
LE = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
ANY_OCTET = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def url_of(ds: pydicom.Dataset) -> str:
    return f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


async def store(client: httpx.AsyncClient, data: bytes) -> None:
    response = await stow(client, [data])
    assert response.status_code == 200, response.text


async def get_parts(client: httpx.AsyncClient, url: str, accept: str) -> tuple[httpx.Response, list[bytes]]:
    response = await client.get(url, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.content, response.headers["content-type"])
    return response, [body for _, body in parts]


def padded(data: bytes) -> bytes:
    return data + b"\x00" * (len(data) % 2)


def encoded_frames(frames: int, transfer_syntax: str, *, size: int = 40) -> tuple[pydicom.Dataset, list[bytes]]:
    """A multi-frame 8-bit monochrome dataset and its frames encoded in ``transfer_syntax``."""
    ds = make_dataset(rows=size, columns=size, frames=frames)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 255, (frames, size, size), dtype=np.uint8)
    encoder = get_encoder(UID(transfer_syntax))
    kwargs = {
        "rows": size,
        "columns": size,
        "samples_per_pixel": 1,
        "bits_allocated": 8,
        "bits_stored": 8,
        "pixel_representation": 0,
        "photometric_interpretation": "MONOCHROME2",
        "number_of_frames": 1,
    }
    # Fragments have even lengths: an odd codestream is stored (and served) with one padding byte.
    encoded = [padded(encoder.encode(arr[i], **kwargs)) for i in range(frames)]
    ds.PixelData = arr.tobytes()
    return ds, encoded


async def test_native_frames_order_media_and_errors(client: httpx.AsyncClient) -> None:
    ds = make_dataset(frames=5, rows=8, columns=6)
    data = to_bytes(ds)
    await store(client, data)
    size = 8 * 6 * 2
    frame = [ds.PixelData[i * size : (i + 1) * size] for i in range(5)]
    base = url_of(ds) + "/frames/"

    # Default: multipart octet-stream, Explicit VR Little Endian, order and repeats kept.
    response, parts = await get_parts(client, base + "3,1,5,3", 'multipart/related; type="application/octet-stream"')
    assert parts == [frame[2], frame[0], frame[4], frame[2]]
    assert int(response.headers["content-length"]) == len(response.content)
    assert 'type="application/octet-stream"' in response.headers["content-type"]
    # No Accept / */*: multipart, as stored.
    _, parts = await get_parts(client, base + "2", "*/*")
    assert parts == [frame[1]]
    # Single part for one frame.
    single = await client.get(base + "4", headers={"Accept": "application/octet-stream; transfer-syntax=*"})
    assert single.status_code == 200
    assert single.content == frame[3]
    assert single.headers["content-type"] == f"application/octet-stream; transfer-syntax={LE}"
    # Single part for several frames: not acceptable; q-values pick the multipart range instead.
    assert (await client.get(base + "1,2", headers={"Accept": "application/octet-stream"})).status_code == 406
    both = await client.get(base + "1,2", headers={"Accept": f"application/octet-stream, {ANY_OCTET}; q=0.5"})
    assert both.status_code == 200
    # Malformed frame lists: 400; out of range: 404.
    for bad in ("0", "a", "1,,2", "-1", "1.5"):
        response = await client.get(base + bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "InvalidFrameNumber"
    response = await client.get(base + "6")
    assert response.status_code == 404
    assert response.json()["code"] == "FrameNotFound"
    # Image types cannot be made from uncompressed 16-bit frames except JPEG 2000 / not JPEG Baseline.
    assert (await client.get(base + "1", headers={"Accept": "image/jpeg"})).status_code == 406
    assert (await client.get(url_of(make_dataset()) + "/frames/1")).status_code == 404
    # JPEG 2000 needs frames of at least 32 x 32 (6 resolutions): a clear 406, not a 500.
    response = await client.get(base + "1", headers={"Accept": "image/jp2"})
    assert response.status_code == 406
    assert response.json()["code"] == "TranscodingFailed"


async def test_instance_without_pixel_data(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.PixelData
    await store(client, to_bytes(ds))
    response = await client.get(url_of(ds) + "/frames/1")
    assert response.status_code == 404
    assert response.json()["code"] == "PixelDataNotFound"


@pytest.mark.parametrize(
    ("layout", "transfer_syntax"),
    [("bot", RLE), ("no-bot", RLE), ("multi-fragment", J2K), ("extended", J2K)],
)
async def test_encapsulated_frames(client: httpx.AsyncClient, layout: str, transfer_syntax: str) -> None:
    ds, encoded = encoded_frames(4, transfer_syntax)
    pixels = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(4, 40, 40)
    if layout == "bot":
        ds.PixelData = encapsulate(encoded, has_bot=True)
    elif layout == "no-bot":
        ds.PixelData = encapsulate(encoded, has_bot=False)
    elif layout == "multi-fragment":
        ds.PixelData = encapsulate(encoded, fragments_per_frame=3, has_bot=False)
    else:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = to_bytes(ds, transfer_syntax=transfer_syntax)
    await store(client, data)
    base = url_of(ds) + "/frames/"

    _, parts = await get_parts(client, base + "4,2", ANY_OCTET)
    assert parts == [encoded[3], encoded[1]]
    # Decoded to Explicit VR Little Endian: pixel-identical (lossless codecs).
    response, parts = await get_parts(client, base + "1,3", 'multipart/related; type="application/octet-stream"')
    assert "content-length" not in response.headers  # transcoded: sizes unknown until encoded
    assert parts == [pixels[0].tobytes(), pixels[2].tobytes()]
    if transfer_syntax == J2K:
        single = await client.get(base + "2", headers={"Accept": "image/jp2"})
        assert single.status_code == 200
        assert single.content == encoded[1]
        assert single.headers["content-type"] == f"image/jp2; transfer-syntax={J2K}"


async def test_frames_of_an_instance_stored_before_the_frame_index(
    client: httpx.AsyncClient, database_url: str
) -> None:
    ds, encoded = encoded_frames(3, RLE)
    ds.PixelData = encapsulate(encoded, has_bot=False)
    ds["PixelData"].VR = "OB"
    await store(client, to_bytes(ds, transfer_syntax=RLE))
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.execute("DELETE FROM instance_frames") == "DELETE 1"
    finally:
        await conn.close()
    _, parts = await get_parts(client, url_of(ds) + "/frames/3,1", ANY_OCTET)
    assert parts == [encoded[2], encoded[0]]


def _sample_ids() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*.dcm"))


@pytest.mark.parametrize("name", _sample_ids())
async def test_every_sample_as_frames(client: httpx.AsyncClient, name: str) -> None:
    """As stored, in Explicit VR Little Endian (pixel-identical to pydicom's decode of the file), and in
    the image media type the stored syntax maps to."""
    data = (SAMPLES / name).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        expected = ds.pixel_array
    ts = str(ds.file_meta.TransferSyntaxUID)
    body, content_type = multipart([data])
    response = await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 202), response.text
    url = url_of(ds) + "/frames/1"

    _, parts = await get_parts(client, url, ANY_OCTET)
    if ds["PixelData"].is_undefined_length:
        assert parts == [next(generate_frames(ds.PixelData, number_of_frames=1))]
    else:
        frame_size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
        assert parts[0] == ds.PixelData[:frame_size]  # without the padding byte of an odd value

    response = await client.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert response.status_code == 200, response.text
    ((headers, body),) = parse_multipart(response.content, response.headers["content-type"])
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={LE}"
    parts = [body]
    decoded = np.frombuffer(parts[0], dtype=expected.dtype.newbyteorder("<")).reshape(expected.shape)
    assert np.array_equal(decoded, expected), name

    image_type = {
        "1.2.840.10008.1.2.4.50": "image/jpeg",
        "1.2.840.10008.1.2.4.51": "image/jpeg",
        J2K: "image/jp2",
        "1.2.840.10008.1.2.4.91": "image/jp2",
    }.get(ts)
    if image_type is not None:
        single = await client.get(url, headers={"Accept": f"{image_type}; transfer-syntax=*"})
        assert single.status_code == 200
        assert single.content == parts_as_stored(ds)
        assert single.headers["content-type"] == f"{image_type}; transfer-syntax={ts}"
    if ts in ("1.2.840.10008.1.2", LE, "1.2.840.10008.1.2.2"):
        # Uncompressed frames can be had as JPEG 2000 lossless: decoding it gives the same pixels.
        single = await client.get(url, headers={"Accept": "image/jp2"})
        assert single.status_code == 200, single.text
        decoder_ds = ds.copy()
        decoder_ds.file_meta.TransferSyntaxUID = UID(J2K)
        decoder_ds.PixelData = encapsulate([single.content])
        decoder_ds["PixelData"].is_undefined_length = True
        decoder_ds.PhotometricInterpretation = "RGB" if ds.SamplesPerPixel == 3 else ds.PhotometricInterpretation
        decoder_ds.PlanarConfiguration = 0
        assert np.array_equal(decoder_ds.pixel_array, expected)


def parts_as_stored(ds: pydicom.Dataset) -> bytes:
    return bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))
