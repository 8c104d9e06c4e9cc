"""Bulk data: which values become BulkDataURI, their paths, and exact offsets in the file as received."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomlake.dicom.header import HeaderLimits, metadata_without_bulk
from tests.unit.dicom.helpers import SAMPLES, assert_matches_pydicom, minimal_dataset, part10, read

SYNTAXES = [ExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian]
PIXELS = bytes(range(256)) * 32  # 64 x 64 x 16 bit


def _image() -> Dataset:
    ds = minimal_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 64, 64, 1, 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.add_new(0x00420011, "OB", b"%PDF" + b"\x01" * 4996)  # EncapsulatedDocument
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "UN", b"\x02" * 3000)
    ds.add_new(0x00091002, "OB", b"\x03\x04")  # binary of any length is bulk
    ds.add_new(0x00204000, "LT", "long " * 400)  # 2000 bytes > threshold
    ds.add_new(0x00081030, "LO", "short")
    ds.add_new(0x00189089, "FD", [0.5, 1.5, 2.5])  # short numeric: inline
    ds.add_new(0x00700022, "FL", [float(i) for i in range(400)])  # 1600 bytes > threshold
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel, icon.BitsAllocated = 8, 8, 1, 8
    icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 7, 0
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.PixelData = bytes(range(64))
    ds.IconImageSequence = Sequence([icon])
    note = Dataset()
    note.TextValue = "Grüße aus Köln"
    ds.ContentSequence = Sequence([note])
    ds.PixelData = PIXELS
    return ds


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_bulk_selection_and_offsets(syntax: str) -> None:
    data = part10(_image(), syntax)
    header = read(data)
    assert_matches_pydicom(header, data)
    paths = {b.path: b for b in header.bulk}
    assert set(paths) == {
        "00091001",
        "00091002",
        "00204000",
        "00420011",
        "00700022",
        "00880200/0/7FE00010",
        "7FE00010",
    }
    metadata = header.metadata
    assert metadata["00081030"] == {"vr": "LO", "Value": ["short"]}
    assert metadata["00189089"] == {"vr": "FD", "Value": [0.5, 1.5, 2.5]}
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}
    assert metadata["0040A730"]["Value"][0]["0040A160"] == {"vr": "UT", "Value": ["Grüße aus Köln"]}
    icon_vr = "OW" if syntax == ImplicitVRLittleEndian else "OB"  # PS3.5 A.1: implicit VR pixel data is OW
    assert metadata["00880200"]["Value"][0]["7FE00010"] == {
        "vr": icon_vr,
        "BulkDataURI": "bulkdata/00880200/0/7FE00010",
    }
    assert paths["7FE00010"].vr == "OW"
    assert paths["7FE00010"].length == len(PIXELS)
    little = syntax != ExplicitVRBigEndian
    lt = paths["00204000"]
    assert data[lt.offset : lt.offset + lt.length].decode() == "long " * 400
    fl = paths["00700022"]
    floats = struct.unpack(f"{'<' if little else '>'}400f", data[fl.offset : fl.offset + fl.length])
    assert list(floats) == [float(i) for i in range(400)]
    icon = paths["00880200/0/7FE00010"]
    assert data[icon.offset : icon.offset + icon.length] == bytes(range(64))
    native = paths["7FE00010"]
    swapped = PIXELS if little else b"".join(PIXELS[i + 1 : i + 2] + PIXELS[i : i + 1] for i in range(0, 8192, 2))
    assert data[native.offset : native.offset + native.length] in (PIXELS, swapped)


def test_threshold_is_inclusive_and_configurable() -> None:
    ds = minimal_dataset()
    ds.add_new(0x00204000, "LT", "x" * 1024)
    assert "Value" in read(part10(ds)).metadata["00204000"]
    ds.add_new(0x00204000, "LT", "x" * 1026)
    assert "BulkDataURI" in read(part10(ds)).metadata["00204000"]
    assert "Value" in read(part10(ds), HeaderLimits(bulk_threshold=2048)).metadata["00204000"]


def test_empty_binary_value_is_not_bulk() -> None:
    ds = minimal_dataset()
    ds.add_new(0x00420011, "OB", b"")
    header = read(part10(ds))
    assert header.metadata["00420011"] == {"vr": "OB"}
    assert header.bulk == ()


def test_native_pixel_data_info() -> None:
    data = part10(_image())
    info = read(data).pixel_data
    assert info is not None
    assert (info.rows, info.columns, info.samples_per_pixel, info.bits_allocated) == (64, 64, 1, 16)
    assert (info.number_of_frames, info.encapsulated, info.length) == (1, False, len(PIXELS))
    assert info.offset is not None
    assert data[info.offset : info.offset + len(PIXELS)] == PIXELS


@pytest.mark.parametrize("name", ["JPEGProcess1.dcm", "RLELossless.dcm", "JPEG2000Lossless.dcm"])
def test_encapsulated_pixel_data_info(name: str) -> None:
    data = SAMPLES.joinpath(name).read_bytes()
    header = read(data)
    info = header.pixel_data
    assert info is not None
    assert info.offset is not None
    assert info.length is not None
    assert info.encapsulated
    assert (info.rows, info.columns) == (434, 636)
    assert data[info.offset : info.offset + 4] == b"\xfe\xff\x00\xe0"  # the Basic Offset Table item
    assert data[info.offset + info.length : info.offset + info.length + 8] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert pydicom.dcmread(SAMPLES / name).PixelData == data[info.offset : info.offset + info.length]
    assert header.metadata["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulkdata/7FE00010"}


def test_multi_frame_count() -> None:
    data = pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm", download=False)
    assert data is not None, "SC_rgb_rle_2frame.dcm should ship inside the pydicom wheel; reinstall with `make install`"
    with open(str(data), "rb") as f:
        info = read(f.read()).pixel_data
    assert info is not None
    assert (info.number_of_frames, info.samples_per_pixel) == (2, 3)


def test_deflated_sample_has_no_offsets() -> None:
    data = SAMPLES.joinpath("DeflatedExplicitVRLittleEndian.dcm").read_bytes()
    header = read(data)
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert header.pixel_data is not None
    assert header.pixel_data.offset is None
    assert header.pixel_data.length == 434 * 636 * 3
    assert [(b.path, b.offset) for b in header.bulk] == [("7FE00010", None)]
    assert any("deflated" in w for w in header.warnings)
    explicit = read(SAMPLES.joinpath("ExplicitVRLittleEndian.dcm").read_bytes())
    assert header.metadata == explicit.metadata


def test_metadata_without_bulk_drops_nested_links() -> None:
    header = read(part10(_image()))
    slim = metadata_without_bulk(header.metadata)
    assert not {"7FE00010", "00420011", "00204000", "00091001"} & set(slim)
    assert slim["00880200"]["Value"][0] == {
        k: v for k, v in header.metadata["00880200"]["Value"][0].items() if k != "7FE00010"
    }
    assert slim["00081030"] == header.metadata["00081030"]
    assert "7FE00010" in header.metadata  # the input is not modified


def test_file_without_preamble_is_read_with_the_same_offsets_shifted() -> None:
    data = part10(_image())
    header = read(data)
    bare = read(data[132:])
    assert bare.metadata == header.metadata
    assert [(b.path, b.offset) for b in bare.bulk] == [(b.path, (b.offset or 0) - 132) for b in header.bulk]
    assert any("preamble" in w for w in bare.warnings)


@pytest.mark.parametrize(
    ("implicit", "little", "syntax"),
    [(True, True, "1.2.840.10008.1.2"), (False, True, "1.2.840.10008.1.2.1"), (False, False, "1.2.840.10008.1.2.2")],
)
def test_data_set_without_file_meta_is_inferred(implicit: bool, little: bool, syntax: str) -> None:
    ds = _image()
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=implicit, little_endian=little)
    data = out.getvalue()
    header = read(data)
    assert header.transfer_syntax_uid == syntax
    assert any("TransferSyntaxUID (0002,0010) is missing" in w for w in header.warnings)
    assert_matches_pydicom(header, data)


def test_warnings_never_carry_patient_values() -> None:
    header = read(part10(_image(), ImplicitVRLittleEndian)[132:])
    assert header.warnings
    assert not any("Müller" in w or "PID-1" in w for w in header.warnings)


def test_any_value_over_the_inline_cap_is_bulk() -> None:
    ds = minimal_dataset()
    ds.add_new(0x00081190, "UR", "http://example.com/" + "a" * 300)
    header = read(part10(ds), HeaderLimits(max_inline_value_bytes=256))
    assert header.metadata["00081190"] == {"vr": "UR", "BulkDataURI": "bulkdata/00081190"}
    assert "Value" in read(part10(ds)).metadata["00081190"]


def test_un_sequence_of_undefined_length_is_read_as_implicit_items() -> None:
    # PS3.5 6.2.2: an UN element of undefined length holds an implicit VR little endian sequence.
    item = struct.pack("<HHL", 0x0008, 0x0100, 4) + b"T-1 " + struct.pack("<HHL", 0x0009, 0x0010, 4) + b"ACME"
    item += struct.pack("<HHL", 0x0009, 0x1001, 2000) + b"\x07" * 2000
    value = struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    element = struct.pack("<HH2sHL", 0x0040, 0xA730, b"UN", 0, 0xFFFFFFFF) + value
    data = part10(minimal_dataset()) + element
    header = read(data)
    assert_matches_pydicom(header, data)
    content = header.metadata["0040A730"]
    assert content["vr"] == "SQ"
    assert content["Value"][0]["00080100"] == {"vr": "SH", "Value": ["T-1"]}
    (bulk,) = header.bulk
    assert bulk.path == "0040A730/0/00091001"
    assert data[bulk.offset : bulk.offset + 2000] == b"\x07" * 2000
