"""Instance retrieve in a transfer syntax other than the stored one: every sample to Explicit VR Little
Endian, uncompressed ones to JPEG 2000 lossless and RLE, pixel-identical to pydicom's decode of the
source (lossy sources too: both sides decode the same codestream with the same plugin)."""

from __future__ import annotations

import io
import warnings

import httpx
import numpy as np
import pydicom
import pytest

from tests.api.test_frames import SAMPLES, _sample_ids, url_of
from tests.factories import make_dataset, multipart, parse_multipart, to_bytes

pytestmark = pytest.mark.integration
LE = "1.2.840.10008.1.2.1"
NATIVE = {"1.2.840.10008.1.2", LE, "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}


def decoded(data: bytes) -> tuple[pydicom.Dataset, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        return ds, ds.pixel_array


@pytest.mark.parametrize("name", _sample_ids())
async def test_sample_transcodes(client: httpx.AsyncClient, name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    source, expected = decoded(data)
    stored_ts = str(source.file_meta.TransferSyntaxUID)
    body, content_type = multipart([data])
    assert (await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})).status_code in (
        200,
        202,
    )
    url = url_of(source)
    targets = [LE] + (["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"] if stored_ts in NATIVE else [])
    for target in targets:
        if target == stored_ts:
            continue
        response = await client.get(url, headers={"Accept": f"application/dicom; transfer-syntax={target}"})
        assert response.status_code == 200, (target, response.text)
        assert response.headers["content-type"] == f"application/dicom; transfer-syntax={target}"
        result, pixels = decoded(response.content)
        assert str(result.file_meta.TransferSyntaxUID) == target
        assert result.SOPInstanceUID == source.SOPInstanceUID
        assert np.array_equal(pixels, expected), (name, target)
    if stored_ts not in NATIVE:
        # Compressed to another compressed syntax: not offered.
        other = "1.2.840.10008.1.2.5" if stored_ts != "1.2.840.10008.1.2.5" else "1.2.840.10008.1.2.4.90"
        response = await client.get(url, headers={"Accept": f"application/dicom; transfer-syntax={other}"})
        assert response.status_code == 406


async def test_study_in_explicit_vr_little_endian(client: httpx.AsyncClient) -> None:
    study = make_dataset().StudyInstanceUID
    rle = (SAMPLES / "RLELossless.dcm").read_bytes()
    source, expected = decoded(rle)
    ds = make_dataset(study=study, rows=40, columns=40)
    parts = [to_bytes(ds)]
    body, content_type = multipart(parts)
    assert (await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})).status_code == 200
    # Put the RLE sample into the same study by re-labelling it.
    source.StudyInstanceUID = study
    buffer = io.BytesIO()
    source.save_as(buffer, enforce_file_format=True)
    body, content_type = multipart([buffer.getvalue()])
    assert (await client.post("/v2/studies", content=body, headers={"Content-Type": content_type})).status_code in (
        200,
        202,
    )
    response = await client.get(
        f"/v2/studies/{study}", headers={"Accept": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 200, response.text
    got = parse_multipart(response.content, response.headers["content-type"])
    assert [h["content-type"] for h, _ in got] == [f"application/dicom; transfer-syntax={LE}"] * 2
    arrays = {decoded(b)[0].SOPInstanceUID: decoded(b)[1] for _, b in got}
    assert np.array_equal(arrays[source.SOPInstanceUID], expected)
    assert np.array_equal(
        arrays[ds.SOPInstanceUID], np.frombuffer(ds.PixelData, "<u2").reshape(40, 40) & 0x0FFF
    )  # BitsStored 12
