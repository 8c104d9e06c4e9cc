"""Extended query tags (Azure DICOM service v2 compatible): validation of the tags to add, and the
rules shared by the HTTP API. Error messages name the entry and the reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicomlake.errors import BadRequestError
from dicomlake.features.search import AZURE_SEARCHABLE
from dicomlake.index.extended_tags import MAX_TAGS, NewTag
from dicomlake.index.search import indexed

#: VRs an extended query tag may have (as the Azure service).
SUPPORTED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "PN", "SH", "SL", "SS", "TM", "UI", "UL", "US"}
)
LEVELS = {"study": "Study", "series": "Series", "instance": "Instance"}
QUERY_STATUSES = {"enabled": "Enabled", "disabled": "Disabled"}
#: Attributes search supports without an extended query tag (indexed columns, Azure's searchable list).
CORE_TAGS = frozenset(indexed("instance")).union(*AZURE_SEARCHABLE.values())

_HEX_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_LO_RE = re.compile(r"^[^\\\x00-\x1f]{1,64}$")

ERROR_MESSAGES = {
    "InvalidValue": "The value is not valid for VR {vr}.",
    "ValueTooLong": "The value is longer than VR {vr} allows.",
    "ValueOutOfRange": "The value is out of range for VR {vr}.",
}


def _bad(message: str) -> BadRequestError:
    return BadRequestError(message, code="InvalidExtendedQueryTag")


def parse_tag_path(text: str) -> int:
    """An extended query tag's path (8-hex tag or keyword; no sequence paths) -> tag number; 400 otherwise."""
    if not isinstance(text, str) or not text:
        raise _bad("The path of an extended query tag is missing.")
    if _HEX_RE.match(text):
        return int(text, 16)
    if "." in text:
        raise _bad(f"The extended query tag '{text[:64]}' is a sequence path, which is not supported.")
    tag = tag_for_keyword(text) if len(text) <= 64 else None
    if tag is None:
        raise _bad(f"The extended query tag '{text[:64]}' is not a DICOM keyword or an 8-hex tag.")
    return int(tag)


def error_message(code: str, vr: str) -> str:
    return ERROR_MESSAGES.get(code, "The value could not be indexed ({code}).").format(vr=vr, code=code)


def _entry(item: Any, index: int) -> NewTag:
    where = f"Entry {index}"
    if not isinstance(item, Mapping):
        raise _bad(f"{where}: an extended query tag is an object with path, vr, privateCreator and level.")
    raw_path = item.get("path")
    tag = parse_tag_path(raw_path) if isinstance(raw_path, str) else -1
    if tag < 0:
        raise _bad(f"{where}: the path is missing (an 8-hex tag such as 00101010, or a keyword).")
    path = f"{tag:08X}"
    group, element = tag >> 16, tag & 0xFFFF
    if group in (0x0000, 0x0002, 0x0004, 0xFFFE) or element == 0x0000:
        raise _bad(f"{where}: {path} is a command, file meta, directory, item or group length attribute.")
    if tag in CORE_TAGS:
        raise _bad(f"{where}: {path} is already supported by search without an extended query tag.")
    raw_level = item.get("level")
    if not isinstance(raw_level, str) or raw_level.lower() not in LEVELS:
        raise _bad(f"{where}: the level of {path} must be Study, Series or Instance.")
    level = LEVELS[raw_level.lower()]
    creator = item.get("privateCreator")
    if creator is not None and not isinstance(creator, str):
        raise _bad(f"{where}: the privateCreator of {path} must be a string.")
    creator = creator or None
    raw_vr = item.get("vr")
    if raw_vr is not None and not isinstance(raw_vr, str):
        raise _bad(f"{where}: the vr of {path} must be a string.")
    vr = raw_vr.strip().upper() if raw_vr else None
    if group % 2 == 1:  # private
        if element < 0x0010:
            raise _bad(f"{where}: {path} is not a valid private attribute.")
        if element <= 0x00FF:  # a private creator element itself
            if creator is not None:
                raise _bad(f"{where}: {path} is a private creator element, which has no privateCreator.")
        else:
            if creator is None:
                raise _bad(f"{where}: the private attribute {path} needs its privateCreator.")
            if not _LO_RE.match(creator):
                raise _bad(f"{where}: the privateCreator of {path} must be a valid LO (1-64 characters, no '\\').")
        if vr is None:
            raise _bad(f"{where}: the private attribute {path} needs its vr.")
    else:
        if creator is not None:
            raise _bad(f"{where}: {path} is a standard attribute, which has no privateCreator.")
        try:
            known = dictionary_VR(tag)
        except KeyError:
            known = None
        if known is None:
            if vr is None:
                raise _bad(f"{where}: {path} is not in the DICOM dictionary; give its vr.")
        else:
            options = [v.strip() for v in known.split(" or ")]
            if vr is None:
                if len(options) > 1:
                    raise _bad(f"{where}: {path} may have VR {known}; give its vr.")
                vr = options[0]
            elif vr not in options:
                raise _bad(f"{where}: the vr {vr[:8]} is not valid for {path} (expected {known}).")
    if vr not in SUPPORTED_VRS:
        raise _bad(f"{where}: VR {vr[:8]} of {path} is not supported; supported: {', '.join(sorted(SUPPORTED_VRS))}.")
    return NewTag(path=path, vr=vr, level=level, private_creator=creator)


def parse_new_tags(body: Any) -> list[NewTag]:
    """The request body of ``POST /extendedquerytags`` -> tags to add; 400 with the reason."""
    if not isinstance(body, list):
        raise _bad("The request body must be a JSON array of extended query tags.")
    if not body:
        raise _bad("The request body has no extended query tag.")
    if len(body) > MAX_TAGS:
        raise _bad(f"At most {MAX_TAGS} extended query tags can be added at once.")
    tags = [_entry(item, i) for i, item in enumerate(body)]
    seen: set[str] = set()
    for t in tags:
        if t.path in seen:
            raise _bad(f"The extended query tag {t.path} is given more than once.")
        seen.add(t.path)
    return tags
