"""Read, validate and describe one uploaded Part 10 instance without loading its large values.

STOW-RS calls `read_instance_header` on each spooled part: it yields the UIDs to index, the DICOM JSON
metadata that QIDO/WADO serve (bulk values replaced by relative ``BulkDataURI``), and the byte offset of
every bulk value so WADO-RS can serve frames and bulk data as ranged reads of the stored file.

Errors: every failure is an `InvalidInstanceError`. Its ``failure_reason`` is 0xA900 when a parsed
instance fails validation (a required attribute missing or invalid) and 0xC000 when the input cannot
be parsed at all or exceeds a `HeaderLimits` bound (not DICOM, truncated, zip bomb, absurd nesting).
Messages name attributes by keyword and tag, never their values, which may be patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.multival import MultiValue

from dicomlake.dicom._walker import (
    BINARY_VRS,
    FAILURE_REASON_UNPARSEABLE,
    Item,
    Leaf,
    Seq,
    Walker,
    inflate,
    locate_data_set,
    unparseable,
)
from dicomlake.dicom.limits import HeaderLimits
from dicomlake.dicom.uids import clean_uid, is_valid_uid
from dicomlake.errors import InvalidInstanceError

__all__ = [
    "FAILURE_REASON_UNPARSEABLE",
    "BulkElement",
    "HeaderLimits",
    "InstanceHeader",
    "PixelDataInfo",
    "metadata_without_bulk",
    "read_instance_header",
]

BULK_URI_PREFIX = "bulkdata/"
PIXEL_DATA = 0x7FE00010
_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)  # Pixel Data, Double Float, Float
_MAX_PATIENT_ID_LENGTH = 64
_REQUIRED_UIDS = (
    ("StudyInstanceUID", 0x0020000D),
    ("SeriesInstanceUID", 0x0020000E),
    ("SOPInstanceUID", 0x00080018),
    ("SOPClassUID", 0x00080016),
)
_PATIENT_ID = ("PatientID", 0x00100020)


@dataclass(frozen=True, slots=True)
class BulkElement:
    """A value served as bulk data. ``path``: ``7FE00010`` at top level, ``00540016/0/00181072`` nested
    (tag/itemIndex/tag...). ``offset``: of the value in the file as received, None when not addressable
    (deflated). ``length``: value bytes; for encapsulated values, up to the Sequence Delimitation Item."""

    path: str
    vr: str
    offset: int | None
    length: int | None


@dataclass(frozen=True, slots=True)
class PixelDataInfo:
    """Where the pixel data value lies and what the frame geometry says (0 when an attribute is absent)."""

    offset: int | None
    length: int | None
    encapsulated: bool
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    """Everything the server indexes and serves about an instance, without its bulk values."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    metadata: dict[str, Any]
    bulk: tuple[BulkElement, ...]
    pixel_data: PixelDataInfo | None
    warnings: tuple[str, ...]


def read_instance_header(fp: IO[bytes], size: int, *, limits: HeaderLimits = HeaderLimits()) -> InstanceHeader:  # noqa: B008 (frozen)
    """Parse the Part 10 instance of ``size`` bytes in ``fp`` (seekable) and validate what is indexed.

    Values longer than the limits, and Pixel Data, are skipped by offset, never read. Leaves ``fp`` at an
    arbitrary position. Raises `InvalidInstanceError` (see the module docstring for ``failure_reason``).
    """
    location = locate_data_set(fp, size)
    warnings = list(location.warnings)
    if location.deflated:
        with inflate(fp, location.start, size, limits) as inflated:
            inflated_size = inflated.seek(0, 2)
            top = _walk(inflated, 0, inflated_size, location.implicit_vr, location.little_endian, limits, warnings)
        warnings.append("the data set is deflated: bulk data offsets are not available")
    else:
        top = _walk(fp, location.start, size, location.implicit_vr, location.little_endian, limits, warnings)
    if not top.nodes:
        raise unparseable("the file holds no data set")
    addressable = not location.deflated
    bulk: list[BulkElement] = []
    metadata = _data_set_json(top, "", addressable, limits, bulk, warnings, top_level=True)
    uids = [_required_uid(top, keyword, tag) for keyword, tag in _REQUIRED_UIDS]
    return InstanceHeader(
        study_instance_uid=uids[0],
        series_instance_uid=uids[1],
        sop_instance_uid=uids[2],
        sop_class_uid=uids[3],
        transfer_syntax_uid=location.transfer_syntax_uid,
        patient_id=_patient_id(top),
        metadata=metadata,
        bulk=tuple(bulk),
        pixel_data=_pixel_data_info(top, addressable),
        warnings=tuple(warnings),
    )


def metadata_without_bulk(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` without the attributes served as BulkDataURI, at every nesting level.

    The Azure-compatible profile omits binary and large values from metadata responses instead of
    linking them; the stored metadata keeps the links so both profiles serve from one document.
    """
    result: dict[str, Any] = {}
    for key, attribute in metadata.items():
        if "BulkDataURI" in attribute:
            continue
        if attribute.get("vr") == "SQ" and "Value" in attribute:
            attribute = {**attribute, "Value": [metadata_without_bulk(item) for item in attribute["Value"]]}
        result[key] = attribute
    return result


def _walk(
    fp: IO[bytes] | BinaryIO,
    start: int,
    end: int,
    implicit_vr: bool,
    little_endian: bool,
    limits: HeaderLimits,
    warnings: list[str],
) -> Item:
    walker = Walker(fp, little_endian=little_endian, limits=limits)
    top = walker.walk(start, end, implicit_vr=implicit_vr)
    warnings.extend(walker.warnings)
    return top


# -- metadata -----------------------------------------------------------------------------------------


def _data_set_json(
    item: Item,
    prefix: str,
    addressable: bool,
    limits: HeaderLimits,
    bulk: list[BulkElement],
    warnings: list[str],
    *,
    top_level: bool = False,
) -> dict[str, Any]:
    """DICOM JSON of one data set in tag order; bulk values become BulkDataURI plus a `BulkElement`."""
    result: dict[str, Any] = {}
    for tag in sorted(item.nodes):
        if top_level and tag >> 16 == 0x0002:
            continue  # File Meta elements in the body are not part of the data set's metadata
        key = f"{tag:08X}"
        node = item.nodes[tag]
        path = prefix + key
        if isinstance(node, Seq):
            values = [
                _data_set_json(child, f"{path}/{i}/", addressable, limits, bulk, warnings)
                for i, child in enumerate(node.items)
            ]
            result[key] = {"vr": "SQ", "Value": values}
        elif node.bulk:
            result[key] = _bulk_json(node, _corrected_vr(node, item.dataset), path, addressable, bulk)
        else:
            result[key] = _leaf_json(node, item.dataset, path, addressable, limits, bulk, warnings)
    return result


def _bulk_json(node: Leaf, vr: str, path: str, addressable: bool, bulk: list[BulkElement]) -> dict[str, Any]:
    bulk.append(BulkElement(path, vr, node.offset if addressable else None, node.length))
    return {"vr": vr, "BulkDataURI": BULK_URI_PREFIX + path}


def _leaf_json(
    node: Leaf,
    dataset: Dataset,
    path: str,
    addressable: bool,
    limits: HeaderLimits,
    bulk: list[BulkElement],
    warnings: list[str],
) -> dict[str, Any]:
    """pydicom's own JSON for an inline value, so conversions (charsets, numbers, PN) are exactly its."""
    try:
        element = dataset[node.tag]
        converted: dict[str, Any] = element.to_json_dict(None, limits.bulk_threshold)
    except Exception:
        warnings.append(f"the value of ({node.tag >> 16:04X},{node.tag & 0xFFFF:04X}) could not be converted")
        return {"vr": node.vr}
    if "InlineBinary" in converted:  # e.g. a value pydicom re-typed to UN: binary is always bulk data
        return _bulk_json(node, str(converted["vr"]), path, addressable, bulk)
    return converted


def _corrected_vr(node: Leaf, dataset: Dataset) -> str:
    """Resolve "OB or OW" and the like as pydicom does, without reading the (bulk) value."""
    if " or " not in node.vr:
        return node.vr
    from pydicom.dataelem import DataElement

    probe = DataElement(node.tag, node.vr, b"", is_undefined_length=node.undefined_length)
    try:
        return str(correct_ambiguous_vr_element(probe, dataset, bool(dataset.original_encoding[1])).VR)
    except Exception:
        return "OW" if "OW" in node.vr else node.vr.split(" or ")[0]


# -- validation -------------------------------------------------------------------------------------------


def _attribute_text(keyword: str, tag: int) -> str:
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _invalid(keyword: str, tag: int, reason: str) -> InvalidInstanceError:
    return InvalidInstanceError(f"{_attribute_text(keyword, tag)} {reason}")


def _string_value(top: Item, keyword: str, tag: int) -> str:
    """The single string value of a top-level attribute, or `InvalidInstanceError` naming why not."""
    node = top.nodes.get(tag)
    if node is None:
        raise _invalid(keyword, tag, "is missing")
    if isinstance(node, Seq) or node.bulk or node.vr in BINARY_VRS:
        raise _invalid(keyword, tag, "has an invalid value representation")
    try:
        value = top.dataset[tag].value
    except Exception as e:
        raise _invalid(keyword, tag, "cannot be decoded") from e
    if isinstance(value, MultiValue | list):
        raise _invalid(keyword, tag, "has more than one value")
    return "" if value is None else str(value)


def _required_uid(top: Item, keyword: str, tag: int) -> str:
    value = clean_uid(_string_value(top, keyword, tag))
    if not value:
        raise _invalid(keyword, tag, "is empty")
    if not is_valid_uid(value):
        raise _invalid(keyword, tag, "is not a valid UID")
    return value


def _patient_id(top: Item) -> str:
    keyword, tag = _PATIENT_ID
    value = _string_value(top, keyword, tag).strip("\x00 ")
    if len(value) > _MAX_PATIENT_ID_LENGTH:
        raise _invalid(keyword, tag, f"is longer than {_MAX_PATIENT_ID_LENGTH} characters")
    return value


# -- pixel data -------------------------------------------------------------------------------------------


def _pixel_data_info(top: Item, addressable: bool) -> PixelDataInfo | None:
    node = next((top.nodes[t] for t in _PIXEL_DATA_TAGS if t in top.nodes), None)
    if not isinstance(node, Leaf):
        return None
    return PixelDataInfo(
        offset=node.offset if addressable else None,
        length=node.length,
        encapsulated=node.undefined_length,
        number_of_frames=_int_attribute(top.dataset, "NumberOfFrames", 1),
        rows=_int_attribute(top.dataset, "Rows", 0),
        columns=_int_attribute(top.dataset, "Columns", 0),
        samples_per_pixel=_int_attribute(top.dataset, "SamplesPerPixel", 1),
        bits_allocated=_int_attribute(top.dataset, "BitsAllocated", 0),
    )


def _int_attribute(dataset: Dataset, keyword: str, default: int) -> int:
    """A small integer attribute, or ``default`` when absent, empty or malformed (stored as received)."""
    try:
        value = dataset.get(keyword)
        return int(value) if value not in (None, "") else default
    except Exception:
        return default
