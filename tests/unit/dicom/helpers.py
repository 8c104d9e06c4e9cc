"""Builders and comparisons shared by the DICOM unit tests."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomlake.dicom.header import HeaderLimits, InstanceHeader, read_instance_header

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"
SOP_UID = "1.2.826.0.1.3680043.8.498.3"
SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
SECRET = "SECRET-PATIENT-VALUE"


def minimal_dataset() -> Dataset:
    """A data set with exactly the attributes the server requires, and a patient value to leak-check."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS_UID
    ds.SOPInstanceUID = SOP_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.PatientID = "PID-1"
    ds.PatientName = SECRET
    return ds


def set_unchecked(ds: Dataset, tag: int, vr: str, value: Any) -> None:
    """Set an element without pydicom's value validation (to build deliberately invalid instances)."""
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian, *, preamble: bool = True) -> bytes:
    """Encode ``ds`` as a Part 10 file in ``transfer_syntax``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    out = io.BytesIO()
    with warnings.catch_warnings():  # invalid UIDs are copied into the File Meta on purpose
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    data = out.getvalue()
    return data if preamble else data[132:]


def read(data: bytes, limits: HeaderLimits | None = None) -> InstanceHeader:
    fp = io.BytesIO(data)
    return read_instance_header(fp, len(data)) if limits is None else read_instance_header(fp, len(data), limits=limits)


def element_at(ds: Dataset, path: str) -> DataElement:
    """The pydicom element at a BulkElement path such as ``00880200/0/7FE00010``."""
    parts = path.split("/")
    current = ds
    for tag, index in zip(parts[0:-1:2], parts[1::2], strict=True):
        current = current[int(tag, 16)].value[int(index)]
    return current[int(parts[-1], 16)]


def assert_matches_pydicom(header: InstanceHeader, data: bytes) -> None:
    """Metadata equals pydicom's ``to_json_dict()`` (group 0002 excluded) where every BulkDataURI stands
    for pydicom's inline value of the same VR; every addressable binary bulk value is exactly at its
    offset in ``data``."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    expected = ds.to_json_dict()
    _compare(expected, header.metadata, "")
    for bulk in header.bulk:
        element = element_at(ds, bulk.path)
        assert header_vr(header.metadata, bulk.path) == bulk.vr
        if bulk.offset is not None and isinstance(element.value, bytes):
            assert data[bulk.offset : bulk.offset + (bulk.length or 0)] == element.value, bulk.path


def header_vr(metadata: dict[str, Any], path: str) -> str:
    parts = path.split("/")
    current = metadata
    for tag, index in zip(parts[0:-1:2], parts[1::2], strict=True):
        current = current[tag]["Value"][int(index)]
    attribute = current[parts[-1]]
    assert attribute["BulkDataURI"] == f"bulkdata/{path}"
    return str(attribute["vr"])


def _compare(expected: dict[str, Any], actual: dict[str, Any], where: str) -> None:
    assert sorted(expected) == sorted(actual), where
    assert list(actual) == sorted(actual), f"keys out of order at {where!r}"
    for key, want in expected.items():
        got = actual[key]
        if "BulkDataURI" in got:
            assert got["vr"] == want["vr"], where + key
            assert "InlineBinary" in want or "Value" in want, where + key
        elif got.get("vr") == "SQ":
            assert len(got["Value"]) == len(want["Value"]), where + key
            for i, (w, g) in enumerate(zip(want["Value"], got["Value"], strict=True)):
                _compare(w, g, f"{where}{key}/{i}/")
        else:
            assert got == want, where + key
