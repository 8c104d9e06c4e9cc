"""Frame offset index (pure): offset tables, fragment grouping, packing, frame lists; Range parsing."""

from __future__ import annotations

import io

import pytest
from pydicom.encaps import encapsulate, encapsulate_extended

from dicomlake.dicom.frames import (
    FrameGeometry,
    PackedFrameIndex,
    encapsulated_frame_index,
    native_frame_range,
    parse_frame_list,
    stored_frame_index,
)
from dicomlake.web.ranges import ByteRange, Unsatisfiable, parse_range

JPEG = [b"\xff\xd8" + bytes([i]) * (10 + i) + b"\xff\xd9" for i in range(3)]
J2K = [b"\xff\x4f\xff\x51" + bytes([i]) * (20 + 2 * i) for i in range(3)]


def frames_of(value: bytes, frames: int, **kwargs: object) -> list[bytes] | None:
    """Index ``value`` placed at offset 100 of a file and cut each frame out of it."""
    data = bytes(100) + value
    index = encapsulated_frame_index(io.BytesIO(data), 100, len(value) - 8, frames, **kwargs)  # type: ignore[arg-type]
    if index is None:
        return None
    packed = PackedFrameIndex(index.to_bytes())
    out = []
    for n in range(1, frames + 1):
        r = packed.frame(n)
        out.append(r.extract(data[r.start : r.end]))
    return out


def padded(frames: list[bytes]) -> list[bytes]:
    return [f + b"\x00" * (len(f) % 2) for f in frames]


@pytest.mark.parametrize("has_bot", [True, False])
def test_one_fragment_per_frame(has_bot: bool) -> None:
    assert frames_of(encapsulate(JPEG, has_bot=has_bot), 3) == padded(JPEG)


def test_multi_fragment_frames_with_bot_and_by_markers() -> None:
    for frames in (JPEG, J2K):
        assert frames_of(encapsulate(frames, fragments_per_frame=2, has_bot=True), 3) == padded(frames)
        assert frames_of(encapsulate(frames, fragments_per_frame=2, has_bot=False), 3) == padded(frames)


def test_extended_offset_table() -> None:
    value, eot, _lengths = encapsulate_extended(J2K)
    data = bytes(100) + value + eot
    packed = stored_frame_index(io.BytesIO(data), 100, len(value) - 8, 3, (100 + len(value), len(eot)))
    assert packed is not None
    index = PackedFrameIndex(packed)
    assert [index.frame(n).size for n in (1, 2, 3)] == [len(f) for f in padded(J2K)]


def test_unknown_boundaries_and_garbage() -> None:
    rle_like = [b"\x01\x00" * 20 for _ in range(3)]
    assert frames_of(encapsulate(rle_like, fragments_per_frame=2, has_bot=False), 3) is None
    assert encapsulated_frame_index(io.BytesIO(b"\x00" * 64), 0, 56, 2) is None
    # A BOT pointing between fragments is rejected, not trusted.
    bot = encapsulate(JPEG, has_bot=True)
    broken = bot[:8] + (1).to_bytes(4, "little") + bot[12:]
    assert frames_of(broken, 3) is None


def test_native_ranges() -> None:
    geometry = FrameGeometry(1000, 3 * 8 * 8 * 2, False, 3, 8, 8, 1, 16)
    r = native_frame_range(geometry, 3)
    assert r is not None
    assert (r.start, r.end) == (1000 + 2 * 128, 1000 + 3 * 128)
    assert native_frame_range(FrameGeometry(0, 100, False, 3, 8, 8, 1, 16), 3) is None  # value too short
    assert native_frame_range(FrameGeometry(0, 100, False, 2, 3, 3, 1, 1), 1) is None  # 1-bit, unaligned


def test_frame_lists() -> None:
    assert parse_frame_list("3,1,3", 3) == [3, 1, 3]
    for bad in ("", "0", "a", "1,,2", "-1", " ", "1.0"):
        with pytest.raises(ValueError):
            parse_frame_list(bad, 3)
    with pytest.raises(LookupError):
        parse_frame_list("4", 3)


def test_range_headers() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == [ByteRange(0, 9)]
    assert parse_range("bytes=-10", 100) == [ByteRange(90, 99)]
    assert parse_range("bytes=90-", 100) == [ByteRange(90, 99)]
    assert parse_range("bytes=0-0,5-500", 100) == [ByteRange(0, 0), ByteRange(5, 99)]
    assert parse_range("bytes=200-300,0-1", 100) == [ByteRange(0, 1)]  # unsatisfiable parts dropped
    for ignored in ("bytes=x", "lines=0-1", "bytes=5-1", "bytes=-", "bytes=" + ",".join(["0-1"] * 17)):
        assert parse_range(ignored, 100) is None, ignored
    for unsatisfiable in ("bytes=100-", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, 100)
