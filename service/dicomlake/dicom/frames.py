"""Where each frame's bytes sit in a stored Part 10 file (pure; no I/O beyond the file object given).

Native (uncompressed) pixel data: frame ``i`` is one contiguous range, computed from the geometry
(rows x columns x samples x bits allocated) and the Pixel Data value offset; nothing needs storing.

Encapsulated pixel data (PS3.5 A.4): the value is a sequence of items, the first being the Basic Offset
Table (BOT), then the fragments. A frame is one or more consecutive fragments. `encapsulated_frame_index`
reads only the 8-byte item headers (and the BOT), and maps fragments to frames using, in order:

1. one frame: every fragment belongs to it;
2. the Extended Offset Table (7FE0,0001), when the caller read it;
3. a non-empty BOT;
4. as many fragments as frames: one each;
5. codec start markers (JPEG/JPEG-LS SOI ``FFD8``, JPEG 2000 / HTJ2K SOC+SIZ ``FF4FFF51``) at the
   start of fragments, when they count exactly the frames.

Otherwise the boundaries are unknown and no index is produced (frames then cannot be served by range).

`FrameIndex.to_bytes` packs the index for the database: ``<II`` (frames, fragments), then
``frames + 1`` little-endian uint32 indexes of each frame's first fragment, then per fragment ``<QI``
(offset of the fragment's *value* in the file, its length). A frame's fragments are contiguous in the
file, separated only by 8-byte item headers, so one ranged read of ``[first.offset, last.end)`` serves a
frame with at most ``8 x (fragments - 1)`` extra bytes.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FrameGeometry",
    "FrameIndex",
    "FrameRange",
    "Seekable",
    "encapsulated_frame_index",
    "native_frame_length",
    "native_frame_range",
    "parse_frame_list",
    "stored_frame_index",
]


class Seekable(Protocol):
    """What the index builders need of a file: ``IO[bytes]``, or a ranged reader over a blob."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def read(self, size: int = -1, /) -> bytes: ...


ITEM_TAG = 0xFFFEE000
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
_ITEM = struct.Struct("<HHL")
_HEADER = struct.Struct("<II")
_FRAGMENT = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_JPEG_SOI = b"\xff\xd8"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
#: A frame list longer than this is refused (400): a client asking for more should ask for the instance.
MAX_FRAMES_PER_REQUEST = 10_000


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """The attributes that size a native frame (from the stored ``PixelDataInfo``)."""

    offset: int | None
    length: int | None
    encapsulated: bool
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FrameGeometry:
        def number(key: str, default: int) -> int:
            value = data.get(key)
            return int(value) if isinstance(value, int | float) else default

        offset = data.get("offset")
        length = data.get("length")
        return cls(
            offset=int(offset) if isinstance(offset, int) else None,
            length=int(length) if isinstance(length, int) else None,
            encapsulated=bool(data.get("encapsulated")),
            number_of_frames=max(1, number("frames", 1)),
            rows=number("rows", 0),
            columns=number("columns", 0),
            samples_per_pixel=number("samplesPerPixel", 1),
            bits_allocated=number("bitsAllocated", 0),
        )

    @property
    def pixels_per_frame(self) -> int:
        return self.rows * self.columns * max(1, self.samples_per_pixel)


@dataclass(frozen=True, slots=True)
class FrameRange:
    """The bytes of one frame: ``[start, end)`` in the file, and the fragment values inside it."""

    fragments: tuple[tuple[int, int], ...]  # (offset, length) of each fragment value

    @property
    def start(self) -> int:
        return self.fragments[0][0]

    @property
    def end(self) -> int:
        offset, length = self.fragments[-1]
        return offset + length

    @property
    def size(self) -> int:
        """Bytes of the frame itself (fragment values, without item headers)."""
        return sum(length for _, length in self.fragments)

    def extract(self, data: bytes) -> bytes:
        """The frame's bytes from ``data``, which holds ``[start, end)`` of the file."""
        if len(self.fragments) == 1:
            return data
        return b"".join(data[o - self.start : o - self.start + n] for o, n in self.fragments)


def native_frame_length(geometry: FrameGeometry) -> int | None:
    """Bytes per native frame, or None when frames are not byte-aligned (1-bit data) or unknown."""
    bits = geometry.pixels_per_frame * geometry.bits_allocated
    if bits <= 0 or bits % 8:
        return None
    return bits // 8


def native_frame_range(geometry: FrameGeometry, number: int) -> FrameRange | None:
    """Frame ``number`` (1-based) of native pixel data, or None when it cannot be addressed."""
    frame_length = native_frame_length(geometry)
    if frame_length is None or geometry.offset is None or geometry.length is None:
        return None
    start = geometry.offset + (number - 1) * frame_length
    if start + frame_length > geometry.offset + geometry.length:
        return None  # the value is shorter than the geometry says
    return FrameRange(((start, frame_length),))


class FrameIndex:
    """Fragments of each frame of encapsulated pixel data; see the module docstring for the format."""

    def __init__(self, frames: list[list[tuple[int, int]]]) -> None:
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, number: int) -> FrameRange:
        return FrameRange(tuple(self._frames[number - 1]))

    def to_bytes(self) -> bytes:
        fragments = [f for frame in self._frames for f in frame]
        out = bytearray(_HEADER.pack(len(self._frames), len(fragments)))
        first = 0
        for frame in self._frames:
            out += _U32.pack(first)
            first += len(frame)
        out += _U32.pack(first)
        for offset, length in fragments:
            out += _FRAGMENT.pack(offset, length)
        return bytes(out)


class PackedFrameIndex:
    """Random access into `FrameIndex.to_bytes` output without unpacking all of it."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise ValueError("frame index too short")
        self._data = data
        self.frames, self.fragments = _HEADER.unpack_from(data, 0)
        self._fragments_at = _HEADER.size + 4 * (self.frames + 1)
        if len(data) != self._fragments_at + _FRAGMENT.size * self.fragments:
            raise ValueError("frame index has an invalid length")

    def __len__(self) -> int:
        return int(self.frames)

    def frame(self, number: int) -> FrameRange:
        first = _U32.unpack_from(self._data, _HEADER.size + 4 * (number - 1))[0]
        last = _U32.unpack_from(self._data, _HEADER.size + 4 * number)[0]
        return FrameRange(
            tuple(
                _FRAGMENT.unpack_from(self._data, self._fragments_at + _FRAGMENT.size * i) for i in range(first, last)
            )
        )


def _items(fp: Seekable, start: int, end: int) -> list[tuple[int, int]]:
    """(value offset, length) of every item of the encapsulated value in ``[start, end)``."""
    items: list[tuple[int, int]] = []
    pos = start
    while end - pos >= 8:
        fp.seek(pos)
        group, element, length = _ITEM.unpack(fp.read(8))
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER_TAG:
            break
        if tag != ITEM_TAG or length > end - pos - 8:
            raise ValueError("invalid item in encapsulated pixel data")
        items.append((pos + 8, length))
        pos += 8 + length
    return items


def _group_by_offsets(fragments: list[tuple[int, int]], base: int, offsets: list[int]) -> list[list[tuple[int, int]]]:
    """Split fragments into frames starting at ``base + offsets[i]`` (offsets of item headers)."""
    starts = [base + o for o in offsets]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise ValueError("offset table is not increasing")
    frames: list[list[tuple[int, int]]] = []
    positions = {offset - 8: i for i, (offset, _) in enumerate(fragments)}
    indexes = []
    for s in starts:
        if s not in positions:
            raise ValueError("offset table does not point at a fragment")
        indexes.append(positions[s])
    indexes.append(len(fragments))
    for a, b in itertools.pairwise(indexes):
        if b <= a:
            raise ValueError("empty frame in offset table")
        frames.append(fragments[a:b])
    return frames


def encapsulated_frame_index(
    fp: Seekable,
    value_offset: int,
    value_length: int,
    number_of_frames: int,
    *,
    extended_offsets: list[int] | None = None,
) -> FrameIndex | None:
    """Map the fragments of the encapsulated value at ``value_offset`` to ``number_of_frames`` frames.

    ``value_length`` runs up to the Sequence Delimitation Item (as `BulkElement` records it).
    Returns None when frame boundaries cannot be determined; raises nothing for malformed data.
    """
    try:
        items = _items(fp, value_offset, value_offset + value_length + 8)
        if not items:
            return None
        bot_offset, bot_length = items[0]
        fragments = items[1:]
        if not fragments:
            return None
        first_item = items[1][0] - 8 if len(items) > 1 else 0
        if number_of_frames <= 1:
            return FrameIndex([fragments])
        if extended_offsets is not None and len(extended_offsets) == number_of_frames:
            return FrameIndex(_group_by_offsets(fragments, first_item, extended_offsets))
        if bot_length >= 4 * number_of_frames:
            fp.seek(bot_offset)
            raw = fp.read(4 * number_of_frames)
            offsets = list(struct.unpack(f"<{number_of_frames}L", raw))
            return FrameIndex(_group_by_offsets(fragments, first_item, offsets))
        if len(fragments) == number_of_frames:
            return FrameIndex([[f] for f in fragments])
        starts: list[int] = []
        for i, (offset, length) in enumerate(fragments):
            fp.seek(offset)
            head = fp.read(min(4, length))
            if head[:2] == _JPEG_SOI or head == _J2K_SOC_SIZ:
                starts.append(i)
        if len(starts) != number_of_frames or starts[0] != 0:
            return None
        bounds = [*starts, len(fragments)]
        return FrameIndex([fragments[a:b] for a, b in itertools.pairwise(bounds)])
    except (ValueError, struct.error):
        return None


def stored_frame_index(
    fp: Seekable,
    value_offset: int | None,
    value_length: int | None,
    number_of_frames: int,
    extended_offset_table: tuple[int, int] | None,
) -> bytes | None:
    """The packed frame index of an encapsulated value in the file ``fp`` (store time), or None.

    ``extended_offset_table``: (offset, length) of the Extended Offset Table (7FE0,0001) value, if any.
    """
    if value_offset is None or value_length is None:
        return None
    extended: list[int] | None = None
    if extended_offset_table is not None:
        offset, length = extended_offset_table
        if length == 8 * number_of_frames:
            fp.seek(offset)
            raw = fp.read(length)
            if len(raw) == length:
                extended = list(struct.unpack(f"<{number_of_frames}Q", raw))
    index = encapsulated_frame_index(fp, value_offset, value_length, number_of_frames, extended_offsets=extended)
    return index.to_bytes() if index is not None else None


def parse_frame_list(text: str, number_of_frames: int) -> list[int]:
    """``"1,3,2"`` -> [1, 3, 2] (1-based, order kept, repeats allowed).

    Raises ValueError (a 400) when malformed, and LookupError (a 404) when a number is out of range.
    """
    pieces = text.split(",")
    if len(pieces) > MAX_FRAMES_PER_REQUEST:
        raise ValueError(f"at most {MAX_FRAMES_PER_REQUEST} frames may be requested at once")
    numbers: list[int] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece.isdigit() or len(piece) > 10:
            raise ValueError("frame numbers must be positive integers separated by commas")
        number = int(piece)
        if number < 1:
            raise ValueError("frame numbers start at 1")
        numbers.append(number)
    out_of_range = [n for n in numbers if n > number_of_frames]
    if out_of_range:
        raise LookupError(f"frame {out_of_range[0]} does not exist: the instance has {number_of_frames} frame(s)")
    return numbers
