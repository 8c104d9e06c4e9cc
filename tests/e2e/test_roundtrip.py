"""Every sample file round-trips byte-identical through STOW and WADO, over raw HTTP and with the
independent dicomweb-client package; its metadata equals pydicom's JSON of the same file."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.factories import zero_preamble
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "dicom-samples").glob("*.dcm"))


def _pydicom_test_files() -> list[Path]:
    from pydicom.data import get_testdata_file

    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "emri_small.dcm"]
    found = []
    for name in names:
        path = get_testdata_file(name, download=False)
        if path:
            found.append(Path(str(path)))
    return found


FILES = SAMPLES + _pydicom_test_files()


def _strip_bulk(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for tag, attr in data.items():
        if "BulkDataURI" in attr or "InlineBinary" in attr:
            out[tag] = {"vr": attr["vr"], "bulk": True}
        elif attr.get("vr") == "SQ" and "Value" in attr:
            out[tag] = {"vr": "SQ", "Value": [_strip_bulk(i) for i in attr["Value"]]}
        else:
            out[tag] = attr
    return out


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 10, "tests/data/dicom-samples should hold the shared sample files"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
async def test_raw_http_roundtrip_and_metadata(service: ServiceProcess, path: Path) -> None:
    data = await asyncio.to_thread(path.read_bytes)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=False)
    partition = path.stem.replace("_", "-")[:60]
    base = f"{service.base_url}/v2/partitions/{partition}"
    async with httpx.AsyncClient(timeout=60) as client:
        stored = await client.post(f"{base}/studies", content=data, headers={"Content-Type": "application/dicom"})
        assert stored.status_code in (200, 202), stored.text
        url = f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        got = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert got.status_code == 200
        assert got.content == zero_preamble(data)
        meta = (await client.get(url + "/metadata")).json()
        assert len(meta) == 1
        expected = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "bulk")
        expected = {k: v for k, v in expected.items() if not k.startswith("0002")}
        assert _strip_bulk(meta[0]) == _strip_bulk(expected)
        for attr in meta[0].values():
            if "BulkDataURI" in attr:
                assert (await client.get(attr["BulkDataURI"])).status_code == 200


async def test_dicomweb_client_roundtrip(service: ServiceProcess) -> None:
    client = DICOMwebClient(url=f"{service.base_url}/v2")
    files = [p for p in SAMPLES if p.name in ("ExplicitVRLittleEndian.dcm", "case1_008.dcm", "XRJPEGProcess1.dcm")]
    assert len(files) == 3
    datasets = [pydicom.dcmread(p) for p in files]

    def run() -> None:
        client.store_instances(datasets=datasets)
        for p, ds in zip(files, datasets, strict=True):
            back = client.retrieve_instance(
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                ds.SOPInstanceUID,
                media_types=(("application/dicom", "*"),),
            )
            assert back.SOPInstanceUID == ds.SOPInstanceUID
            assert back.PixelData == pydicom.dcmread(p).PixelData
            metadata = client.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            assert metadata["00080018"]["Value"] == [ds.SOPInstanceUID]
        study = datasets[0].StudyInstanceUID
        instances = client.retrieve_study(study, media_types=(("application/dicom", "*"),))
        assert {i.SOPInstanceUID for i in instances} == {
            d.SOPInstanceUID for d in datasets if d.StudyInstanceUID == study
        }

    await asyncio.to_thread(run)
