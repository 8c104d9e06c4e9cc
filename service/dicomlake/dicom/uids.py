"""DICOM UID syntax (PS3.5 §9.1).

Only the syntax is checked: the server indexes and routes by UID, so a malformed one would make an
instance unreachable or collide in storage paths; whether the root is registered is not our concern.
"""

from __future__ import annotations

import re

__all__ = ["MAX_UID_LENGTH", "clean_uid", "is_valid_uid"]

MAX_UID_LENGTH = 64

# Components of digits, separated by single dots; a component is "0" or has no leading zero.
_UID_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def clean_uid(value: str) -> str:
    """Strip the NUL and space padding that UI values carry in files (values are padded to even length)."""
    return value.strip("\x00 ")


def is_valid_uid(value: str) -> bool:
    """Tell whether ``value`` is a syntactically valid UID: 1-64 chars of digits and dots, no empty component,
    no leading zero in a multi-digit component. Padding is not accepted here: call `clean_uid` first."""
    return 0 < len(value) <= MAX_UID_LENGTH and _UID_PATTERN.fullmatch(value) is not None
