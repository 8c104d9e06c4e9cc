"""What is indexed is validated; messages name the attribute, never a value."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from dicomlake.errors import InvalidInstanceError
from tests.unit.dicom.helpers import (
    SECRET,
    SERIES_UID,
    SOP_CLASS_UID,
    SOP_UID,
    STUDY_UID,
    minimal_dataset,
    part10,
    read,
    set_unchecked,
)

REQUIRED = [
    ("StudyInstanceUID", 0x0020000D, "StudyInstanceUID (0020,000D)"),
    ("SeriesInstanceUID", 0x0020000E, "SeriesInstanceUID (0020,000E)"),
    ("SOPInstanceUID", 0x00080018, "SOPInstanceUID (0008,0018)"),
    ("SOPClassUID", 0x00080016, "SOPClassUID (0008,0016)"),
    ("PatientID", 0x00100020, "PatientID (0010,0020)"),
]


def _fails(ds: Dataset, transfer_syntax: str | None = None) -> InvalidInstanceError:
    data = part10(ds) if transfer_syntax is None else part10(ds, transfer_syntax)
    with pytest.raises(InvalidInstanceError) as info:
        read(data)
    assert SECRET not in str(info.value)
    return info.value


def test_minimal_instance_is_accepted() -> None:
    header = read(part10(minimal_dataset()))
    assert (header.study_instance_uid, header.series_instance_uid) == (STUDY_UID, SERIES_UID)
    assert (header.sop_instance_uid, header.sop_class_uid) == (SOP_UID, SOP_CLASS_UID)
    assert header.patient_id == "PID-1"
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert header.pixel_data is None
    assert header.bulk == ()


@pytest.mark.parametrize(("keyword", "tag", "label"), REQUIRED)
def test_each_required_attribute_missing(keyword: str, tag: int, label: str) -> None:
    ds = minimal_dataset()
    del ds[tag]
    error = _fails(ds)
    assert error.message == f"{label} is missing"
    assert error.failure_reason == 0xA900
    assert error.status_code == 400


@pytest.mark.parametrize(("keyword", "tag", "label"), REQUIRED[:4])
@pytest.mark.parametrize("bad", ["1.02.3", "1..2", "1.2.", "abc", "1.2.3a", "1." + "2" * 70, "1.2\\1.3"])
def test_invalid_uid_is_refused(keyword: str, tag: int, label: str, bad: str) -> None:
    ds = minimal_dataset()
    set_unchecked(ds, tag, "UI", bad)
    error = _fails(ds)
    assert error.message.startswith(label)
    assert bad not in error.message
    assert error.failure_reason == 0xA900


@pytest.mark.parametrize(("keyword", "tag", "label"), REQUIRED[:4])
def test_empty_uid_is_refused(keyword: str, tag: int, label: str) -> None:
    ds = minimal_dataset()
    set_unchecked(ds, tag, "UI", "")
    assert _fails(ds).message == f"{label} is empty"


def test_uid_padding_is_removed() -> None:
    ds = minimal_dataset()
    set_unchecked(ds, 0x00080018, "UI", SOP_UID + "\x00")
    assert read(part10(ds)).sop_instance_uid == SOP_UID


def test_uid_with_wrong_vr_in_implicit_file_is_still_found() -> None:
    # Implicit VR: the VR comes from the dictionary, the value is read and validated.
    header = read(part10(minimal_dataset(), ImplicitVRLittleEndian))
    assert header.sop_instance_uid == SOP_UID
    assert any("Implicit VR" in w for w in header.warnings)


def test_empty_patient_id_is_accepted() -> None:
    ds = minimal_dataset()
    ds.PatientID = ""
    header = read(part10(ds))
    assert header.patient_id == ""
    assert header.metadata["00100020"] == {"vr": "LO"}


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # pydicom's own complaint
def test_long_patient_id_is_refused() -> None:
    ds = minimal_dataset()
    set_unchecked(ds, 0x00100020, "LO", "P" * 65)
    error = _fails(ds)
    assert error.message == "PatientID (0010,0020) is longer than 64 characters"
    assert "P" * 65 not in error.message


def test_patient_id_of_64_characters_is_accepted() -> None:
    ds = minimal_dataset()
    set_unchecked(ds, 0x00100020, "LO", "P" * 64)
    assert read(part10(ds)).patient_id == "P" * 64


def test_multi_valued_patient_id_is_refused() -> None:
    ds = minimal_dataset()
    set_unchecked(ds, 0x00100020, "LO", ["A", "B"])
    assert _fails(ds).message == "PatientID (0010,0020) has more than one value"


def test_binary_vr_for_a_uid_is_refused() -> None:
    ds = minimal_dataset()
    set_unchecked(ds, 0x0020000D, "OB", STUDY_UID.encode() + b"\x00")
    assert _fails(ds).message == "StudyInstanceUID (0020,000D) has an invalid value representation"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a dicom file at all, just some text" * 10,
        bytes(range(256)) * 4,
        b"\x00" * 128 + b"DICM",
        b"\x00" * 1000,
    ],
    ids=["empty", "text", "binary", "preamble-only", "zeros"],
)
def test_not_dicom_is_unparseable(data: bytes) -> None:
    with pytest.raises(InvalidInstanceError) as info:
        read(data)
    assert info.value.failure_reason == 0xC000


@pytest.mark.parametrize("cut", [140, 200, -3])
def test_truncated_file_is_unparseable(cut: int) -> None:
    ds = minimal_dataset()
    ds.ImageComments = "x" * 300
    data = part10(ds)
    with pytest.raises(InvalidInstanceError) as info:
        read(data[:cut])
    assert info.value.failure_reason == 0xC000
    assert SECRET not in info.value.message
