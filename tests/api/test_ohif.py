"""The requests OHIF Viewer v3 sends with its default DICOMweb data source, in its order and with its
exact parameter spelling (dicomweb-facts §7): study list, series list, series metadata, then frames."""

from __future__ import annotations

import io

import httpx
import pydicom
import pytest

from tests.api.test_frames import SAMPLES, store
from tests.factories import parse_multipart

pytestmark = pytest.mark.integration
OHIF_FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


async def test_ohif_study_list_series_metadata_and_frames(client: httpx.AsyncClient) -> None:
    data = (SAMPLES / "JPEGProcess1.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data))

    studies = await client.get(
        "/v2/studies",
        params={"limit": "101", "offset": "0", "fuzzymatching": "false", "includefield": "00081030,00080060"},
        headers={"Accept": "application/dicom+json"},
    )
    assert studies.status_code == 200
    study = next(s for s in studies.json() if s["0020000D"]["Value"] == [ds.StudyInstanceUID])
    assert study["00080061"]["Value"] == [ds.Modality]  # ModalitiesInStudy without includefield=all
    assert "00201208" in study  # NumberOfStudyRelatedInstances

    series = await client.get(f"/v2/studies/{ds.StudyInstanceUID}/series", headers={"Accept": "application/dicom+json"})
    assert series.status_code == 200
    assert series.json()[0]["0020000E"]["Value"] == [ds.SeriesInstanceUID]

    metadata = await client.get(f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata")
    assert metadata.status_code == 200
    item = metadata.json()[0]
    assert item["00280010"]["Value"] == [ds.Rows]
    assert "BulkDataURI" in item["7FE00010"]

    frames_url = (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1"
    )
    response = await client.get(frames_url, headers={"Accept": OHIF_FRAMES_ACCEPT})
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.content, response.headers["content-type"])
    assert len(parts) == 1
    headers, body = parts[0]
    # transfer-syntax=* means as stored: the JPEG Baseline codestream of frame 1, untouched.
    assert headers["content-type"].startswith("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50")
    assert body[:2] == b"\xff\xd8"
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    assert body.rstrip(b"\x00") == frames[0].rstrip(b"\x00")
