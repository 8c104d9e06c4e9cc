"""Hostile uploads are refused before pydicom (or we) spend memory or time on them."""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import zlib
from typing import Any

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomlake.dicom import _walker
from dicomlake.dicom.header import HeaderLimits, read_instance_header
from dicomlake.errors import InvalidInstanceError
from tests.unit.dicom.helpers import SOP_CLASS_UID, SOP_UID, minimal_dataset, part10, read

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
ITEM_UNDEFINED = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
BOMB = 48 * 1024 * 1024  # inflated size of the bomb; compresses to about 50 kB
SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def element(tag: int, vr: str, value: bytes = b"", length: int | None = None) -> bytes:
    """Explicit VR little endian element; ``length`` may lie about the value."""
    n = len(value) if length is None else length
    if vr in LONG_VRS:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, n) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), n) + value


def _refused(data: bytes, limits: HeaderLimits | None = None) -> InvalidInstanceError:
    with pytest.raises(InvalidInstanceError) as info:
        read(data, limits)
    assert info.value.failure_reason == 0xC000
    return info.value


class RecordingReads(io.BytesIO):
    """Remembers the largest read request, to prove no declared length is trusted."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.largest = max(self.largest, -1 if size is None else size)
        return super().read(size)


# -- declared lengths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        element(0x7FE00010, "OB", b"\x00" * 16, length=0xFFFFFFF0),
        element(0x00204000, "LT", b"abc", length=0xFFFE),
        element(0x0040A160, "UT", b"abc", length=0x7FFFFFFF),
        element(0x0040A730, "SQ", struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFF0) + b"\x00" * 16),
        element(0x0040A730, "SQ", ITEM_UNDEFINED + element(0x00091001, "OB", b"", length=0xF0000000)),
        element(0x7FE00010, "OB", struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFF00), length=0xFFFFFFFF),
    ],
    ids=["pixel-data", "short-length", "ut", "item-length", "nested-element", "fragment-length"],
)
def test_declared_length_beyond_the_file_is_refused_without_reading_it(tail: bytes) -> None:
    data = part10(minimal_dataset()) + tail
    fp = RecordingReads(data)
    with pytest.raises(InvalidInstanceError) as info:
        read_instance_header(fp, len(data))
    assert info.value.failure_reason == 0xC000
    assert fp.largest <= 1024 * 1024


def test_implicit_vr_declared_length_is_checked() -> None:
    data = part10(minimal_dataset(), ImplicitVRLittleEndian) + struct.pack("<HHL", 0x0010, 0x4000, 0xFFFFFFF0)
    assert "declares" in _refused(data).message


# -- nesting ------------------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    opening = element(0x0040A730, "SQ", length=0xFFFFFFFF) + ITEM_UNDEFINED
    return opening * depth + (ITEM_DELIMITER + SEQUENCE_DELIMITER) * depth


def test_nesting_at_the_limit_is_accepted() -> None:
    header = read(part10(minimal_dataset()) + _nested(16))
    level = header.metadata
    for _ in range(16):
        level = level["0040A730"]["Value"][0]
    assert level == {}


@pytest.mark.parametrize("depth", [17, 100_000])
def test_nesting_beyond_the_limit_is_refused(depth: int) -> None:
    assert "nested deeper than 16" in _refused(part10(minimal_dataset()) + _nested(depth)).message


def test_nesting_limit_is_configurable() -> None:
    _refused(part10(minimal_dataset()) + _nested(3), HeaderLimits(max_sequence_depth=2))


# -- element count ------------------------------------------------------------------------------------


def _many_elements(count: int) -> bytes:
    ds = minimal_dataset()
    ds.add_new(0x00090010, "LO", "ACME")
    for i in range(count):
        ds.add_new(0x00091000 + i, "SH", "x")
    return part10(ds)


def test_element_count_is_capped() -> None:
    data = _many_elements(200)
    read(data)  # fine with the default limit
    assert "more than 100 elements" in _refused(data, HeaderLimits(max_elements=100)).message


# -- deflate bombs ------------------------------------------------------------------------------------


_REAL_SPOOL = tempfile.SpooledTemporaryFile


class CountingSpool:
    """Stands in for SpooledTemporaryFile and counts what the inflater writes."""

    written = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._file = _REAL_SPOOL(*args, **kwargs)

    def write(self, data: bytes) -> int:
        type(self).written += len(data)
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> CountingSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


@functools.cache
def _deflated_file(zeros: int) -> bytes:
    """A deflated instance whose data set ends in ``zeros`` bytes of OB: tiny compressed, huge inflated."""
    explicit = part10(minimal_dataset())
    body = explicit[132 + 12 + struct.unpack("<L", explicit[140:144])[0] :]
    body += element(0x00091001, "OB", length=zeros)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = SOP_UID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = DicomBytesIO(b"\x00" * 128 + b"DICM")
    out.seek(0, 2)
    write_file_meta_info(out, meta, enforce_standard=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.write(compressor.compress(body))
    block = b"\x00" * (1024 * 1024)
    for _ in range(zeros // len(block)):
        out.write(compressor.compress(block))
    out.write(compressor.flush())
    return out.getvalue()


@pytest.fixture
def spool(monkeypatch: pytest.MonkeyPatch) -> type[CountingSpool]:
    CountingSpool.written = 0
    monkeypatch.setattr(_walker.tempfile, "SpooledTemporaryFile", CountingSpool)
    return CountingSpool


def test_small_deflated_file_is_read(spool: type[CountingSpool]) -> None:
    header = read(_deflated_file(1024 * 1024))
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert header.bulk[0].offset is None
    assert header.bulk[0].length == 1024 * 1024


def test_deflate_bomb_stops_at_the_absolute_cap(spool: type[CountingSpool]) -> None:
    data = _deflated_file(BOMB)
    assert len(data) < 200_000
    cap = 2 * 1024 * 1024
    error = _refused(data, HeaderLimits(max_inflated_bytes=cap))
    assert "inflates to more than" in error.message
    assert spool.written <= cap


def test_deflate_bomb_stops_at_the_ratio_cap(spool: type[CountingSpool]) -> None:
    data = _deflated_file(BOMB)
    limits = HeaderLimits(min_inflate_allowance=0)  # default ratio (200x) and absolute cap
    _refused(data, limits)
    assert spool.written <= len(data) * limits.max_inflate_ratio


def test_corrupt_deflate_stream_is_refused() -> None:
    data = _deflated_file(1024)
    _refused(data[:-40] + b"\xff" * 40)


def test_truncated_deflate_stream_is_refused() -> None:
    data = _deflated_file(1024 * 1024)
    assert "truncated" in _refused(data[: len(data) - 50]).message


def test_stray_delimiters_are_refused() -> None:
    _refused(part10(minimal_dataset()) + ITEM_DELIMITER)
    _refused(part10(minimal_dataset()) + element(0x0040A730, "SQ", length=0xFFFFFFFF) + ITEM_UNDEFINED)


def test_unterminated_encapsulated_value_is_refused() -> None:
    fragment = struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"\x00" * 4
    tail = element(0x7FE00010, "OB", length=0xFFFFFFFF) + fragment
    assert "Sequence Delimitation Item" in _refused(part10(minimal_dataset()) + tail).message


def test_sequence_item_with_an_unknown_tag_is_refused() -> None:
    tail = element(0x0040A730, "SQ", struct.pack("<HHL", 0x0008, 0x0016, 0))
    _refused(part10(minimal_dataset()) + tail)
