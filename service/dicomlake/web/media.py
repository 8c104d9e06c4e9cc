"""Media types of PS3.18 §8.7: parsing Content-Type and Accept, and choosing what to send.

A DICOM media range is ``single`` (``application/dicom``) or ``multipart/related; type="..."``, each
optionally with ``transfer-syntax=UID|*``. Accept may list several, with q-values; the best one the
server can produce wins, and nothing acceptable is a 406.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dicomlake.errors import NotAcceptableError

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
ANY_TRANSFER_SYNTAX = "*"


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str  # lower-case "type/subtype"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def is_multipart_related(self) -> bool:
        return self.type == "multipart/related"

    @property
    def related_type(self) -> str | None:
        value = self.params.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_media_type(text: str) -> MediaType:
    pieces = _split(text, ";")
    main = pieces[0].strip().lower()
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if "=" not in piece:
            continue
        key, _, value = piece.partition("=")
        key = key.strip().lower()
        value = _unquote(value)
        if key == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        else:
            params[key] = value
    # The type parameter of multipart/related may itself carry a transfer-syntax: type="application/dicom;
    # transfer-syntax=..." is not valid per RFC 2387, but clients send it; honour it.
    related = params.get("type")
    if related and ";" in related:
        inner = parse_media_type(related)
        params["type"] = inner.type
        for k, v in inner.params.items():
            params.setdefault(k, v)
    return MediaType(main, params, q)


def parse_accept(header: str | None) -> list[MediaType]:
    """Media ranges from an Accept header, best first (stable for equal q). Missing header = ``*/*``."""
    if header is None or not header.strip():
        return [MediaType("*/*")]
    ranges = [parse_media_type(p) for p in _split(header, ",") if p.strip()]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


@dataclass(frozen=True, slots=True)
class InstanceRendition:
    """What an instance retrieve will send."""

    multipart: bool
    transfer_syntax: str  # a UID, or "*" for as stored


def choose_instance_rendition(
    accept: list[MediaType],
    *,
    stored_syntaxes: set[str],
    single_allowed: bool,
    can_transcode: Callable[[str, str], bool] | None = None,
) -> InstanceRendition:
    """Pick the first acceptable range for retrieving whole instances.

    ``stored_syntaxes``: transfer syntaxes of the instances to send; a requested UID is satisfiable when
    every instance already has it or ``can_transcode(stored, requested)`` holds for each.
    ``transfer-syntax=*`` always is.
    """
    reasons: list[str] = []
    for media in accept:
        if media.type in ("*/*", "multipart/*"):
            return InstanceRendition(multipart=not single_allowed or media.type == "multipart/*", transfer_syntax="*")
        if media.type == "application/dicom":
            if not single_allowed:
                reasons.append("application/dicom (single part) is only for one instance; use multipart/related")
                continue
            multipart = False
        elif media.is_multipart_related and media.related_type in (None, "application/dicom"):
            multipart = True
        else:
            reasons.append(f"{media.type} is not offered for instances")
            continue
        syntax = media.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN
        if syntax == ANY_TRANSFER_SYNTAX or stored_syntaxes <= {syntax}:
            return InstanceRendition(multipart=multipart, transfer_syntax=syntax)
        if can_transcode is not None and all(can_transcode(s, syntax) for s in stored_syntaxes):
            return InstanceRendition(multipart=multipart, transfer_syntax=syntax)
        reasons.append(
            f"transfer syntax {syntax} cannot be produced (stored as {', '.join(sorted(stored_syntaxes))}); "
            "ask for transfer-syntax=* to receive the files as stored"
        )
    raise NotAcceptableError("No acceptable media type: " + "; ".join(reasons or ["nothing requested"]))


def accepts_dicom_json(accept: list[MediaType]) -> bool:
    return any(m.type in ("application/dicom+json", "application/json", "*/*", "application/*") for m in accept)


# -- frames (PS3.18 §8.7.3.5.2, Table 8.7.3-5) -------------------------------------------------------------

OCTET_STREAM = "application/octet-stream"
#: Image media types for compressed frames: default transfer syntax, and those the type can carry.
FRAME_IMAGE_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "image/jpeg": (
        "1.2.840.10008.1.2.4.50",
        frozenset(
            {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
        ),
    ),
    "image/jls": ("1.2.840.10008.1.2.4.80", frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})),
    "image/jp2": ("1.2.840.10008.1.2.4.90", frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})),
    "image/jph": (
        "1.2.840.10008.1.2.4.201",
        frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}),
    ),
    "image/jpx": ("1.2.840.10008.1.2.4.92", frozenset({"1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"})),
}


@dataclass(frozen=True, slots=True)
class FrameRendition:
    """What a frame retrieve will send: each frame as ``media_type`` in ``transfer_syntax``."""

    multipart: bool
    media_type: str
    transfer_syntax: str  # a UID, or "*" for as stored


def choose_frame_rendition(
    accept: list[MediaType],
    *,
    stored_syntax: str,
    single_allowed: bool,
    can_transcode: Callable[[str, str], bool],
) -> FrameRendition:
    """The first acceptable range for frames stored in ``stored_syntax`` (q-values already sorted).

    ``*/*`` means multipart octet-stream as stored. ``application/octet-stream`` without a transfer
    syntax means Explicit VR Little Endian; an image type without one means its default (e.g. JPEG
    Baseline for image/jpeg), and an image type is only produced in a syntax it can carry.
    """
    reasons: list[str] = []
    for media in accept:
        if media.type in ("*/*", "multipart/*"):
            return FrameRendition(True, OCTET_STREAM, ANY_TRANSFER_SYNTAX)
        multipart = media.is_multipart_related
        kind = (media.related_type or OCTET_STREAM) if multipart else media.type
        if kind in ("application/*", "*/*"):
            kind = OCTET_STREAM
        if not multipart and not single_allowed:
            reasons.append(f"{kind} (single part) is only for one frame; use multipart/related")
            continue
        if kind == OCTET_STREAM:
            syntax = media.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN
            if syntax == ANY_TRANSFER_SYNTAX or can_transcode(stored_syntax, syntax):
                return FrameRendition(multipart, kind, syntax)
        elif kind in FRAME_IMAGE_TYPES or kind == "image/*":
            candidates = [kind] if kind != "image/*" else list(FRAME_IMAGE_TYPES)
            for name in candidates:
                default, allowed = FRAME_IMAGE_TYPES[name]
                syntax = media.transfer_syntax or default
                if syntax == ANY_TRANSFER_SYNTAX or kind == "image/*":
                    syntax = stored_syntax if stored_syntax in allowed else syntax
                if syntax in allowed and can_transcode(stored_syntax, syntax):
                    return FrameRendition(multipart, name, syntax)
        else:
            reasons.append(f"{kind} is not offered for frames")
            continue
        reasons.append(
            f"{kind} with transfer syntax {media.transfer_syntax or 'default'} cannot be produced from frames "
            f"stored as {stored_syntax}; ask for transfer-syntax=* to receive them as stored"
        )
    raise NotAcceptableError("No acceptable media type for frames: " + "; ".join(reasons or ["nothing requested"]))
