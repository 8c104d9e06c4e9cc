"""A bounded walker over the elements of a Part 10 file.

Why not ``pydicom.dcmread``: it reads a declared length as is (a 4 GB length in a 1 KB file is a 4 GB
read attempt), inflates deflated data sets in one call, recurses without bound, and gives no reliable
value offsets for nested elements. This walker reads only element headers and the small values the
metadata needs, checks every declared length against the bytes left in its container before reading,
and records the exact byte offset of every value it skips. The values it does read are handed to
pydicom as ``RawDataElement`` objects, so their conversion (character sets, VR lookup, numbers) is
exactly pydicom's. The reading rules (VR switches, UN/undefined length, missing transfer syntax)
mirror ``pydicom.filereader`` 3.0 so that the metadata matches ``dcmread(...).to_json_dict()``.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import MutableSequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.hooks import raw_element_vr
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from dicomlake.dicom.limits import HeaderLimits
from dicomlake.errors import InvalidInstanceError

__all__ = [
    "FAILURE_REASON_UNPARSEABLE",
    "Item",
    "Leaf",
    "Seq",
    "Walker",
    "inflate",
    "locate_data_set",
    "unparseable",
]

FAILURE_REASON_UNPARSEABLE = 0xC000
"""PS3.18 "Cannot understand": the bytes are not a DICOM data set we can walk safely."""

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_TAG = 0xFFFEE000
ITEM_DELIMITER_TAG = 0xFFFEE00D
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

# PS3.18 F.2.7: binary VRs are never inlined; these others are when short enough.
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"})
THRESHOLD_VRS = frozenset(
    {"DS", "FL", "FD", "IS", "LT", "SL", "SS", "ST", "SV", "UC", "UL", "US", "UT", "UV", "US or SS"}
)

_ENCODED_VRS = frozenset(str(vr).encode() for vr in VR if len(str(vr)) == 2)
_LONG_VRS = frozenset(EXPLICIT_VR_LENGTH_32)
_KNOWN_VRS = frozenset(str(vr) for vr in VR)
_META_VALUE_CAP = 1024 * 1024
_READ_CHUNK = 1024 * 1024
_DEFLATED_TRANSFER_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})

Encoding = str | MutableSequence[str]


def unparseable(message: str) -> InvalidInstanceError:
    """An `InvalidInstanceError` whose ``failure_reason`` is 0xC000: the input cannot be parsed (or
    would cost more than the limits allow), as opposed to a parsed instance failing validation."""
    err = InvalidInstanceError(message)
    err.failure_reason = FAILURE_REASON_UNPARSEABLE
    return err


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@dataclass(slots=True)
class Leaf:
    """A non-sequence element; ``bulk`` elements were skipped and are only known by offset and length."""

    tag: int
    vr: str
    offset: int
    length: int
    undefined_length: bool
    bulk: bool


@dataclass(slots=True)
class Seq:
    tag: int
    offset: int
    items: list[Item]


@dataclass(slots=True)
class Item:
    """One data set (top level or sequence item): our nodes, plus pydicom's view of the inline values."""

    nodes: dict[int, Leaf | Seq]
    dataset: Dataset


@dataclass(frozen=True, slots=True)
class DataSetLocation:
    """Where the data set starts and how it is encoded, as found by `locate_data_set`."""

    start: int
    transfer_syntax_uid: str
    implicit_vr: bool
    little_endian: bool
    deflated: bool
    warnings: tuple[str, ...]


def _read_exact(fp: IO[bytes], n: int, what: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise unparseable(f"the file is truncated in {what}")
    return data


def _read_file_meta(fp: IO[bytes], pos: int, size: int) -> tuple[int, dict[int, bytes]]:
    """Read group 0002 (always explicit VR little endian; implicit tolerated as pydicom does)."""
    meta: dict[int, bytes] = {}
    while size - pos >= 8:
        fp.seek(pos)
        header = _read_exact(fp, 8, "the File Meta Information")
        group, element = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            break
        vr = header[4:6]
        if vr in _ENCODED_VRS:
            if vr.decode() in _LONG_VRS:
                length = struct.unpack("<L", _read_exact(fp, 4, "the File Meta Information"))[0]
                pos += 12
            else:
                length = struct.unpack("<H", header[6:8])[0]
                pos += 8
        else:
            length = struct.unpack("<L", header[4:8])[0]
            pos += 8
        if length > min(size - pos, _META_VALUE_CAP):
            raise unparseable(f"File Meta element {_tag_text(group << 16 | element)} has an invalid length")
        meta[group << 16 | element] = _read_exact(fp, length, "the File Meta Information")
        pos += length
    return pos, meta


def _looks_like_data_set(fp: IO[bytes], pos: int, size: int) -> bool:
    """Without preamble and File Meta, accept only a first element with a known public tag (or a group
    length) of group 0008 or later (either byte order), so that arbitrary bytes are reported as "not
    DICOM" rather than as missing attributes."""
    if size - pos < 8:
        return False
    fp.seek(pos)
    head = fp.read(4)
    for endian in "<>":
        group, element = struct.unpack(f"{endian}HH", head)
        if 0x0008 <= group < 0x7FE0 and (element == 0 or dictionary_has_tag(group << 16 | element)):
            return True
    return False


def locate_data_set(fp: IO[bytes], size: int) -> DataSetLocation:
    """Skip preamble and File Meta, and decide the data set's encoding (as ``pydicom.read_partial`` does)."""
    warnings: list[str] = []
    fp.seek(0)
    head = fp.read(132)
    pos = 132 if len(head) == 132 and head[128:132] == b"DICM" else 0
    if pos == 0:
        warnings.append("the file has no 128-byte preamble and DICM prefix")
    start, meta = _read_file_meta(fp, pos, size)
    if pos == 0 and not meta and not _looks_like_data_set(fp, start, size):
        raise unparseable("the file is not a DICOM Part 10 instance: no DICM prefix, File Meta or data set found")
    raw_ts = meta.get(0x00020010)
    if raw_ts is not None:
        ts = raw_ts.decode("ascii", "replace").strip("\x00 ")
        return _location_for(ts, start, warnings)
    warnings.append("TransferSyntaxUID (0002,0010) is missing; the transfer syntax was inferred")
    return _infer_location(fp, start, size, warnings)


def _location_for(ts: str, start: int, warnings: list[str]) -> DataSetLocation:
    implicit = ts == "1.2.840.10008.1.2"
    little = ts != "1.2.840.10008.1.2.2"
    if implicit:
        warnings.append("the data set is Implicit VR: its VRs come from the data dictionary")
    deflated = ts in _DEFLATED_TRANSFER_SYNTAXES
    return DataSetLocation(start, ts, implicit, little, deflated, tuple(warnings))


def _infer_location(fp: IO[bytes], start: int, size: int, warnings: list[str]) -> DataSetLocation:
    """pydicom's guess for a missing transfer syntax: a valid VR after the first tag means explicit VR,
    and a first group >= 1024 read as little endian means big endian."""
    if size - start < 6:
        return _location_for("1.2.840.10008.1.2", start, warnings)
    fp.seek(start)
    group, _, vr = struct.unpack("<HH2s", fp.read(6))
    if vr not in _ENCODED_VRS:
        return _location_for("1.2.840.10008.1.2", start, warnings)
    return _location_for("1.2.840.10008.1.2.2" if group >= 1024 else "1.2.840.10008.1.2.1", start, warnings)


def inflate(fp: IO[bytes], start: int, size: int, limits: HeaderLimits) -> IO[bytes]:
    """Inflate the deflated data set into a spooled temp file, refusing to write more than the cap.

    Streaming with ``max_length`` bounds memory to one chunk and the work to the cap, however
    compressible the input: a zip bomb is refused after ``cap`` bytes, not after 2 GB.
    """
    compressed = size - start
    cap = min(limits.max_inflated_bytes, max(limits.min_inflate_allowance, compressed * limits.max_inflate_ratio))
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=limits.spool_max_memory)  # noqa: SIM115 (returned)
    try:
        _inflate_into(fp, start, compressed, cap, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _inflate_into(fp: IO[bytes], start: int, compressed: int, cap: int, out: IO[bytes]) -> None:
    fp.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    left_in = compressed
    written = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail
        if not data and left_in:
            data = fp.read(min(_READ_CHUNK, left_in))
            left_in -= len(data)
            if not data:
                left_in = 0
        try:
            chunk = inflater.decompress(data, cap - written + 1)
        except zlib.error as e:
            raise unparseable("the deflated data set cannot be inflated") from e
        if not chunk and not data:
            raise unparseable("the deflated data set is truncated")
        written += len(chunk)
        if written > cap:
            raise unparseable(f"the deflated data set inflates to more than {cap} bytes")
        out.write(chunk)


class Walker:
    """Walks one data set, enforcing `HeaderLimits`; see the module docstring."""

    def __init__(self, fp: IO[bytes] | BinaryIO, *, little_endian: bool, limits: HeaderLimits) -> None:
        self._fp = fp
        self._little = little_endian
        self._limits = limits
        endian = "<" if little_endian else ">"
        self._tag_length = struct.Struct(f"{endian}HHL")
        self._explicit = struct.Struct(f"{endian}HH2sH")
        self._u32 = struct.Struct(f"{endian}L")
        self._elements = 0
        self.warnings: list[str] = []

    def walk(self, start: int, end: int, *, implicit_vr: bool) -> Item:
        """Walk the top-level data set in ``[start, end)``."""
        self._fp.seek(start)
        return self._read_data_set(end, delimited=False, implicit=implicit_vr, depth=0, encoding=default_encoding)

    # -- data sets -------------------------------------------------------------------------------------

    def _detect_implicit(self, assumed: bool, limit: int, in_sequence: bool) -> bool:
        """pydicom's ``_is_implicit_vr``: trust the first element's VR bytes over the transfer syntax."""
        if in_sequence and assumed:
            return True
        pos = self._fp.tell()
        if limit - pos < 6:
            return assumed
        vr = self._fp.read(6)[4:6]
        self._fp.seek(pos)
        found = not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)
        if found == assumed:
            return assumed
        if in_sequence:
            return True  # items may be implicit VR in an explicit VR file (PS3.5 6.2.2); never the reverse
        self.warnings.append(f"the data set is {'implicit' if found else 'explicit'} VR, unlike its transfer syntax")
        return found

    def _read_data_set(self, limit: int, *, delimited: bool, implicit: bool, depth: int, encoding: Encoding) -> Item:
        top = depth == 0
        implicit = self._detect_implicit(implicit, limit, in_sequence=not top)
        # pydicom's Dataset keeps this very dict: elements stay raw (converted lazily, exactly as after
        # dcmread), and private VR lookups during the walk see the creators read so far.
        elements: dict[BaseTag, RawDataElement | DataElement] = {}
        dataset = Dataset(elements, parent_encoding=encoding)
        nodes: dict[int, Leaf | Seq] = {}
        own_encoding = encoding
        while True:
            pos = self._fp.tell()
            left = limit - pos
            if left == 0 and not delimited:
                break
            if left < 8:
                if top:
                    self.warnings.append(f"{left} trailing byte(s) after the last element were ignored")
                    break
                raise unparseable("a sequence item is truncated or misses its Item Delimitation Item")
            header = self._fp.read(8)
            if len(header) != 8:
                raise unparseable("the data set is truncated in an element header")
            group, element = struct.unpack(f"{'<' if self._little else '>'}HH", header[:4])
            tag = group << 16 | element
            if tag == ITEM_DELIMITER_TAG and delimited:
                break
            if group == 0xFFFE:
                raise unparseable(f"unexpected item tag {_tag_text(tag)} inside a data set")
            node = self._read_element(tag, header, limit, implicit, depth, own_encoding, dataset, elements)
            nodes[tag] = node
            if tag == SPECIFIC_CHARACTER_SET and isinstance(node, Leaf) and not node.bulk:
                own_encoding = self._charset(dataset, encoding)
        dataset.set_original_encoding(implicit, self._little, own_encoding)
        return Item(nodes, dataset)

    def _charset(self, dataset: Dataset, inherited: Encoding) -> Encoding:
        """The Python codecs for this data set's (0008,0005); the inherited ones if it is unusable."""
        raw = dataset.get_item(SPECIFIC_CHARACTER_SET)
        value = raw.value if raw is not None else b""
        try:
            names = convert_string(value if isinstance(value, bytes) else b"", self._little)
            return convert_encodings(names)
        except Exception:
            self.warnings.append("SpecificCharacterSet (0008,0005) cannot be interpreted; it was ignored")
            return inherited

    def _count(self) -> None:
        self._elements += 1
        if self._elements > self._limits.max_elements:
            raise unparseable(f"the data set has more than {self._limits.max_elements} elements")

    # -- elements -------------------------------------------------------------------------------------

    def _header_vr_length(self, header: bytes, implicit: bool, limit: int) -> tuple[str | None, int]:
        """Decode VR and length as pydicom's ``data_element_generator`` does (incl. its VR-switch rules)."""
        if implicit:
            return None, self._tag_length.unpack(header)[2]
        _, _, vr_bytes, short_length = self._explicit.unpack(header)
        if vr_bytes in _ENCODED_VRS:
            vr = vr_bytes.decode()
            if vr in _LONG_VRS:
                if limit - self._fp.tell() < 4:
                    raise unparseable("the data set is truncated in an element header")
                return vr, self._u32.unpack(self._fp.read(4))[0]
            return vr, short_length
        if not (b"AA" <= vr_bytes <= b"ZZ"):
            return None, self._tag_length.unpack(header)[2]  # an implicit VR element inside explicit VR
        return vr_bytes.decode("latin-1"), short_length

    def _read_element(
        self,
        tag: int,
        header: bytes,
        limit: int,
        implicit: bool,
        depth: int,
        encoding: Encoding,
        dataset: Dataset,
        elements: dict[BaseTag, RawDataElement | DataElement],
    ) -> Leaf | Seq:
        vr, length = self._header_vr_length(header, implicit, limit)
        self._count()
        value_pos = self._fp.tell()
        if length == UNDEFINED_LENGTH:
            return self._read_undefined(tag, vr, value_pos, limit, implicit, depth, encoding, dataset, elements)
        if length > limit - value_pos:
            raise unparseable(
                f"element {_tag_text(tag)} declares {length} bytes but only {limit - value_pos} remain in its container"
            )
        resolved = self._resolve_vr(tag, vr, length, dataset)
        if resolved == "SQ":
            seq = self._read_sequence(tag, value_pos, value_pos + length, value_pos + length, implicit, depth, encoding)
            self._attach_sequence(elements, seq, undefined=False)
            return seq
        bulk = self._is_bulk(tag, resolved, length)
        if bulk:
            self._fp.seek(value_pos + length)
        else:
            value: Any = self._fp.read(length) if length else empty_value_for_VR(vr, raw=True)
            elements[BaseTag(tag)] = RawDataElement(
                BaseTag(tag), vr, length, value, value_pos, vr is None, self._little
            )
        return Leaf(tag, resolved, value_pos, length, False, bulk)

    def _read_undefined(
        self,
        tag: int,
        vr: str | None,
        value_pos: int,
        limit: int,
        implicit: bool,
        depth: int,
        encoding: Encoding,
        dataset: Dataset,
        elements: dict[BaseTag, RawDataElement | DataElement],
    ) -> Leaf | Seq:
        """Undefined length: a sequence (SQ, UN per PS3.5 6.2.2, or items follow) or encapsulated data."""
        is_sequence = vr in ("SQ", "UN")
        if vr is None:
            try:
                is_sequence = dictionary_VR(tag) == "SQ"
            except KeyError:
                is_sequence = self._peek_tag(limit) == ITEM_TAG
        if is_sequence:
            seq = self._read_sequence(tag, value_pos, None, limit, implicit, depth, encoding)
            self._attach_sequence(elements, seq, undefined=True)
            return seq
        end = self._skip_fragments(tag, limit)
        return Leaf(tag, self._resolve_vr(tag, vr, UNDEFINED_LENGTH, dataset), value_pos, end - value_pos, True, True)

    def _peek_tag(self, limit: int) -> int | None:
        pos = self._fp.tell()
        if limit - pos < 4:
            return None
        group, element = struct.unpack(f"{'<' if self._little else '>'}HH", self._fp.read(4))
        self._fp.seek(pos)
        return int(group << 16 | element)

    def _skip_fragments(self, tag: int, limit: int) -> int:
        """Skip the items of an encapsulated value; return the offset of its Sequence Delimitation Item."""
        while True:
            pos = self._fp.tell()
            if limit - pos < 8:
                raise unparseable(f"encapsulated element {_tag_text(tag)} has no Sequence Delimitation Item")
            group, element, length = self._tag_length.unpack(self._fp.read(8))
            self._count()
            item_tag = group << 16 | element
            if item_tag == SEQUENCE_DELIMITER_TAG:
                return pos
            if item_tag != ITEM_TAG or length > limit - pos - 8:
                raise unparseable(f"encapsulated element {_tag_text(tag)} has an invalid item")
            self._fp.seek(pos + 8 + length)

    def _resolve_vr(self, tag: int, vr: str | None, length: int, dataset: Dataset) -> str:
        """The VR pydicom would give the element (dictionary for implicit VR, private dictionary, UN rules)."""
        if vr is not None and vr != "UN":
            return vr if vr in _KNOWN_VRS else "UN"  # pydicom cannot convert it: keep the bytes as UN
        if vr is None:
            try:
                return str(dictionary_VR(tag))
            except KeyError:
                if not BaseTag(tag).is_private:
                    return "UL" if tag & 0xFFFF == 0 else "UN"
        elif length >= 0xFFFF and length != UNDEFINED_LENGTH:
            return "UN"  # pydicom only re-types short UN values
        data: dict[str, Any] = {}
        raw_element_vr(RawDataElement(BaseTag(tag), vr, length, None, 0, vr is None, self._little), data, ds=dataset)
        return str(data["VR"])

    def _is_bulk(self, tag: int, vr: str, length: int) -> bool:
        if length == 0 or tag == SPECIFIC_CHARACTER_SET:
            return False
        if tag in PIXEL_DATA_TAGS or vr in BINARY_VRS or length > self._limits.max_inline_value_bytes:
            return True
        return vr in THRESHOLD_VRS and length > self._limits.bulk_threshold

    # -- sequences ------------------------------------------------------------------------------------

    def _read_sequence(
        self, tag: int, value_pos: int, end: int | None, limit: int, implicit: bool, depth: int, encoding: Encoding
    ) -> Seq:
        """Read items until ``end`` (defined length) or the Sequence Delimitation Item."""
        if depth + 1 > self._limits.max_sequence_depth:
            raise unparseable(f"sequences are nested deeper than {self._limits.max_sequence_depth} levels")
        bound = end if end is not None else limit
        items: list[Item] = []
        while True:
            pos = self._fp.tell()
            if end is not None and pos >= end:
                break
            if bound - pos < 8:
                raise unparseable(f"sequence {_tag_text(tag)} is truncated")
            group, element, length = self._tag_length.unpack(self._fp.read(8))
            self._count()
            item_tag = group << 16 | element
            if item_tag == SEQUENCE_DELIMITER_TAG:
                if end is not None:
                    self._fp.seek(end)
                break
            if item_tag != ITEM_TAG:
                raise unparseable(f"sequence {_tag_text(tag)} holds {_tag_text(item_tag)} where an item belongs")
            items.append(self._read_item(tag, length, bound, implicit, depth + 1, encoding))
        return Seq(tag, value_pos, items)

    def _read_item(self, tag: int, length: int, bound: int, implicit: bool, depth: int, encoding: Encoding) -> Item:
        if length == UNDEFINED_LENGTH:
            return self._read_data_set(bound, delimited=True, implicit=implicit, depth=depth, encoding=encoding)
        start = self._fp.tell()
        if length > bound - start:
            raise unparseable(f"an item of sequence {_tag_text(tag)} declares more bytes than remain")
        return self._read_data_set(start + length, delimited=False, implicit=implicit, depth=depth, encoding=encoding)

    def _attach_sequence(
        self, elements: dict[BaseTag, RawDataElement | DataElement], seq: Seq, *, undefined: bool
    ) -> None:
        """Give pydicom the sequence too, so nested ambiguous VRs resolve with their parents in reach."""
        value = Sequence([item.dataset for item in seq.items])
        elements[BaseTag(seq.tag)] = DataElement(seq.tag, "SQ", value, seq.offset, undefined)
