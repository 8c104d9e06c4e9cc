"""Resource limits for parsing untrusted uploads.

pydicom trusts its input: a declared length is read as is, deflate is inflated in one call and
sequences recurse without bound. These limits are what the walker in ``_walker`` enforces before any
value is read, so one hostile instance costs bounded time, memory and disk.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HeaderLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Bounds for `read_instance_header`; the defaults suit real instances of several GB.

    ``bulk_threshold``: values longer than this (bytes) of the numeric/text VRs listed in PS3.18 F.2.7
    are served as BulkDataURI instead of inline JSON.
    ``max_inline_value_bytes``: any value longer than this becomes bulk whatever its VR, so a hostile
    100 MB ``CS`` is never read into memory.
    ``max_inflated_bytes`` / ``max_inflate_ratio`` / ``min_inflate_allowance``: a deflated data set may
    inflate to at most ``min(max_inflated_bytes, max(min_inflate_allowance, compressed * ratio))``.
    ``spool_max_memory``: inflated data stays in memory up to this size, then goes to a temp file.
    """

    bulk_threshold: int = 1024
    max_inline_value_bytes: int = 1 * _MIB
    max_sequence_depth: int = 16
    max_elements: int = 1_000_000
    max_inflated_bytes: int = 512 * _MIB
    max_inflate_ratio: int = 200
    min_inflate_allowance: int = 64 * _MIB
    spool_max_memory: int = 16 * _MIB
