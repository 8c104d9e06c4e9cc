"""Synthetic DICOM instances (pydicom Dataset -> Part 10 bytes) for tests."""

from __future__ import annotations

import io
import secrets

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def new_uid() -> str:
    return str(generate_uid())


def make_dataset(
    *,
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
    patient_id: str = "PAT-1",
    patient_name: str = "Doe^Jane",
    rows: int = 16,
    columns: int = 16,
    frames: int = 1,
    modality: str = "CT",
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop or new_uid()
    ds.StudyInstanceUID = study or new_uid()
    ds.SeriesInstanceUID = series or new_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.Modality = modality
    ds.StudyDate = "20240131"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = secrets.token_bytes(rows * columns * 2 * frames)
    return ds


def to_bytes(ds: Dataset, *, transfer_syntax: str = ExplicitVRLittleEndian, preamble: bytes | None = None) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    if preamble is not None:
        ds.preamble = preamble
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def instance_bytes(**kwargs: object) -> bytes:
    return to_bytes(make_dataset(**kwargs))  # type: ignore[arg-type]


def zero_preamble(data: bytes) -> bytes:
    if data[128:132] == b"DICM":
        return bytes(128) + data[128:]
    return data


def multipart(
    parts: list[bytes], *, boundary: str = "dicomlake-test-boundary", preamble: bytes = b""
) -> tuple[bytes, str]:
    body = bytearray(preamble)
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += part
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f'multipart/related; type="application/dicom"; boundary="{boundary}"'


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """A deliberately simple, independent reader of multipart/related responses (for tests only)."""
    from dicomlake.web.media import parse_media_type

    boundary = parse_media_type(content_type).params["boundary"].encode()
    delimiter = b"--" + boundary
    assert body.endswith(delimiter + b"--\r\n"), body[-100:]
    chunks = body[: -len(delimiter + b"--\r\n")].split(delimiter)
    assert chunks[0] == b""
    out = []
    for chunk in chunks[1:]:
        assert chunk.startswith(b"\r\n")
        assert chunk.endswith(b"\r\n")
        head, _, payload = chunk[2:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        out.append((headers, payload))
    return out
