"""QIDO-RS search (PS3.18 §8.3.4, §10.6; PS3.4 C.2.2.2): parse and validate a query, run it on the
search index, build the DICOM JSON answer.

Query parameters are either QIDO parameters (``includefield``, ``limit``, ``offset``, ``fuzzymatching``,
``orderby``) or attribute ids (keyword, 8-hex tag, dotted sequence path) with a matching value. Anything
else is rejected (a typo must not silently widen a search). Errors name the parameter and the reason,
never the value (which may be patient data).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomlake.compat import Behaviour
from dicomlake.dicom.uids import is_valid_uid
from dicomlake.errors import InvalidQueryError
from dicomlake.index.search import (
    LEVELS,
    Attribute,
    Condition,
    ExtendedTag,
    Kind,
    Level,
    Order,
    SearchIndex,
    SearchQuery,
)

QIDO_PARAMETERS = ("includefield", "limit", "offset", "fuzzymatching", "orderby")
DEFAULT_LIMIT = 100

# Tags used by name below.
SPECIFIC_CHARACTER_SET = 0x00080005
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
MODALITY = 0x00080060
MODALITIES_IN_STUDY = 0x00080061
RETRIEVE_URL = 0x00081190
STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
SOP_UID = 0x00080018
N_STUDY_SERIES = 0x00201206
N_STUDY_INSTANCES = 0x00201208
N_SERIES_INSTANCES = 0x00201209
COMPUTED = {MODALITIES_IN_STUDY, RETRIEVE_URL, N_STUDY_SERIES, N_STUDY_INSTANCES, N_SERIES_INSTANCES}

#: PS3.18 Tables 10.6.3-3/4/5 (default return attributes per level), plus StudyDescription.
STANDARD_DEFAULTS: dict[Level, tuple[int, ...]] = {
    "study": (
        0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080061, 0x00080090, 0x00080201, 0x00081030,
        0x00081190, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x0020000D, 0x00200010, 0x00201206,
        0x00201208,
    ),
    "series": (
        0x00080005, 0x00080060, 0x00080201, 0x0008103E, 0x00081190, 0x0020000E, 0x00200011, 0x00201209,
        0x00400244, 0x00400245, 0x00400275,
    ),
    "instance": (
        0x00080005, 0x00080016, 0x00080018, 0x00080201, 0x00081190, 0x00200013, 0x00280010, 0x00280011,
        0x00280100, 0x00280008,
    ),
}  # fmt: skip

#: The Azure DICOM service's default return attributes (v2 conformance statement).
AZURE_DEFAULTS: dict[Level, tuple[int, ...]] = {
    "study": (0x00080020, 0x00080050, 0x00081030, 0x00080090, 0x00100010, 0x00100020, 0x00100030, 0x0020000D),
    "series": (0x00080060, 0x00081090, 0x0020000E, 0x00400244),
    "instance": (0x00080018,),
}
#: ... and what its ``includefield=all`` adds.
AZURE_ALL: dict[Level, tuple[int, ...]] = {
    "study": (
        0x00080005, 0x00080030, 0x00080201, 0x00100040, 0x00101010, 0x00101020, 0x00101030, 0x00200010,
        0x00201206, 0x00201208,
    ),
    "series": (0x00080005, 0x00080201, 0x0008103E, 0x00200011, 0x00400245, 0x00400275, 0x00201209),
    "instance": (0x00080005, 0x00080016, 0x00080201, 0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008),
}  # fmt: skip

#: Attributes the Azure profile accepts as search keys, per level (plus extended query tags).
AZURE_SEARCHABLE: dict[Level, frozenset[int]] = {
    "study": frozenset(
        {0x0020000D, 0x00100010, 0x00100020, 0x00100030, 0x00080050, 0x00080090, 0x00080020, 0x00081030, 0x00080061}
    ),
    "series": frozenset({0x0020000E, 0x00080060, 0x00400244, 0x00081090}),
    "instance": frozenset({0x00080018}),
}

#: Which stored top-level attributes belong to the study and series levels (for ``includefield=all``
#: and level placement); everything else is instance level. Patient module (group 0010) is study level.
STUDY_LEVEL_TAGS = frozenset(
    {
        0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00080056, 0x00080061, 0x00080062, 0x00080090,
        0x00080096, 0x00081030, 0x00081032, 0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00081080,
        0x00081110, 0x0020000D, 0x00200010, 0x00201206, 0x00201208, 0x00321032, 0x00321033, 0x00321060,
        0x00321064, 0x00380010, 0x00380500, 0x00400275,
    }
)  # fmt: skip
SERIES_LEVEL_TAGS = frozenset(
    {
        0x00080021, 0x00080031, 0x00080060, 0x00080068, 0x00080070, 0x00080080, 0x00081010, 0x00081040,
        0x00081050, 0x00081070, 0x00081090, 0x0008103E, 0x00081111, 0x00180015, 0x00181000, 0x00181030,
        0x00185100, 0x0020000E, 0x00200011, 0x00200052, 0x00200060, 0x00201209, 0x00400244, 0x00400245,
        0x00400253, 0x00400254,
    }
)  # fmt: skip
ALWAYS_WITH_LEVEL = {0x00080005, 0x00080201}  # SpecificCharacterSet, TimezoneOffsetFromUTC: every level


def tag_level(tag: int) -> Level:
    if tag >> 16 == 0x0010 or tag in STUDY_LEVEL_TAGS:
        return "study"
    if tag in SERIES_LEVEL_TAGS:
        return "series"
    return "instance"


_MAX_LENGTH = {"AE": 16, "AS": 4, "CS": 16, "SH": 16, "LO": 64, "PN": 64 * 3 + 2, "UI": 64, "DA": 8, "TM": 16}
_HEX_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_DA_RE = re.compile(r"^\d{8}$")
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$")
_INT_RE = re.compile(r"^[+-]?\d{1,12}$")


def _bad(parameter: str, reason: str) -> InvalidQueryError:
    return InvalidQueryError(f"Query parameter '{parameter}': {reason}", code="InvalidQueryParameter")


def resolve_attribute(text: str, parameter: str, extended: Mapping[int, ExtendedTag]) -> Attribute:
    """Keyword, 8-hex tag or dotted path of those -> Attribute; 400 when not a DICOM attribute."""
    if not text or len(text) > 200:
        raise _bad(parameter, "is not a DICOM attribute")
    path: list[int] = []
    vr = ""
    parts = text.split(".")
    for i, part in enumerate(parts):
        tag = int(part, 16) if _HEX_RE.match(part) else tag_for_keyword(part)
        if tag is None:
            raise _bad(parameter, "is neither a DICOM attribute (keyword, tag or sequence path) nor a QIDO parameter")
        if tag >> 16 in (0x0000, 0x0002) or tag > 0xFFFFFFFF:
            raise _bad(parameter, "names a command or file meta attribute, which is not searchable")
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            ext = extended.get(tag)
            vr = ext.vr if ext is not None else "LO"  # private or unknown tag: text, exact matching
        if i < len(parts) - 1 and vr != "SQ":
            raise _bad(parameter, "a dotted path may only pass through sequence (SQ) attributes")
        path.append(tag)
    return Attribute(tuple(path), vr)


def _normalise_time(value: str, *, high: bool = False) -> str:
    """'HHMMSS.FFFFFF', missing parts zero (or nine, for the upper end of a range)."""
    whole, _, frac = value.partition(".")
    pad = "9" if high else "0"
    if high and len(whole) < 6:
        whole = whole + ("5959" if len(whole) == 2 else "59")[: 6 - len(whole)]
    return whole.ljust(6, pad) + "." + frac.ljust(6, pad)


def _normalise_datetime(value: str, *, high: bool = False) -> str:
    core = re.sub(r"[+-]\d{4}$", "", value)
    whole, _, frac = core.partition(".")
    pad = "9" if high else "0"
    return whole.ljust(14, pad) + "." + frac.ljust(6, pad)


def _check_date(value: str, parameter: str) -> str:
    if not _DA_RE.match(value):
        raise _bad(parameter, "is not a valid date (DA): use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    try:
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as e:
        raise _bad(parameter, "is not a valid calendar date (DA)") from e
    return value


def _check_time(value: str, parameter: str) -> str:
    m = _TM_RE.match(value)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59 or int(m.group(3) or 0) > 60:
        raise _bad(parameter, "is not a valid time (TM): use HH[MM[SS[.FFFFFF]]] or a range of those")
    return value


def _check_datetime(value: str, parameter: str) -> str:
    m = _DT_RE.match(value)
    if not m:
        raise _bad(parameter, "is not a valid date-time (DT): use YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]")
    month, day, hour = int(m.group(2) or 1), int(m.group(3) or 1), int(m.group(4) or 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23):
        raise _bad(parameter, "is not a valid date-time (DT)")
    return value


def _split_list(value: str, kind: Kind) -> list[str]:
    separators = r"[\\,]" if kind == "uid" else r"\\"
    return [v for v in re.split(separators, value)]


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_condition(attribute: Attribute, value: str, parameter: str, *, fuzzy: bool) -> Condition | None:
    """One match key -> Condition; None for universal matching (empty value or a lone '*')."""
    kind = attribute.kind
    if value == "" or value == "*":
        return None
    if kind == "binary":
        raise _bad(parameter, f"attributes of VR {attribute.vr} cannot be matched")
    if kind == "sq":
        raise _bad(parameter, "a sequence can only be matched through a dotted path to one of its attributes")
    limit = _MAX_LENGTH.get(attribute.vr)
    if kind in ("date", "time", "datetime"):
        if "\\" in value or "," in value:
            raise _bad(parameter, f"lists are not supported for VR {attribute.vr}")
        check = {"date": _check_date, "time": _check_time, "datetime": _check_datetime}[kind]
        if "*" in value or "?" in value:
            raise _bad(parameter, f"wildcards are not supported for VR {attribute.vr}; use a range")
        is_offset = kind == "datetime" and re.fullmatch(r"\d{5,}(\.\d+)?-\d{4}", value) is not None
        if "-" in value and not is_offset:
            low_text, _, high_text = value.partition("-")
            if not low_text and not high_text:
                raise _bad(parameter, "a range needs at least one end ('a-b', 'a-' or '-b')")
            low = check(low_text, parameter) if low_text else None
            high = check(high_text, parameter) if high_text else None
            return Condition(
                attribute, "range", low=_bound(kind, low, False), high=_bound(kind, high, True), parameter=parameter
            )
        check(value, parameter)
        if kind == "date":
            return Condition(attribute, "eq", (value,), parameter=parameter)
        return Condition(
            attribute, "range", low=_bound(kind, value, False), high=_bound(kind, value, True), parameter=parameter
        )
    values = _split_list(value, kind)
    for v in values:
        if limit is not None and len(v.replace("*", "").replace("?", "")) > limit:
            raise _bad(parameter, f"is longer than VR {attribute.vr} allows ({limit} characters)")
        if "\x00" in v:
            raise _bad(parameter, "contains a NUL character")
    if kind == "uid":
        for v in values:
            if not is_valid_uid(v):
                raise _bad(parameter, "is not a valid UID (or a list of UIDs separated by '\\' or ',')")
        return Condition(attribute, "in" if len(values) > 1 else "eq", tuple(values), parameter=parameter)
    if kind == "num":
        for v in values:
            if not _NUM_RE.match(v.strip()) or (attribute.vr == "IS" and not _INT_RE.match(v.strip())):
                raise _bad(parameter, f"is not a valid number for VR {attribute.vr}")
        return Condition(
            attribute, "in" if len(values) > 1 else "eq", tuple(v.strip() for v in values), parameter=parameter
        )
    if len(values) > 1:
        if any("*" in v or "?" in v for v in values):
            raise _bad(parameter, "wildcards cannot be combined with a list of values")
        return Condition(attribute, "in", tuple(values), parameter=parameter)
    if kind == "pn" and fuzzy and "*" not in value and "?" not in value:
        tokens = tuple(t for t in re.split(r"[\s\^,=]+", value) if t)
        if not tokens:
            return None
        return Condition(attribute, "fuzzy", tokens, parameter=parameter)
    if "*" in value or "?" in value:
        if kind == "pn":
            return Condition(attribute, "like", (value,), parameter=parameter)
        return Condition(attribute, "like", (_like_pattern(value),), parameter=parameter)
    return Condition(attribute, "eq", (value,), parameter=parameter)


def _bound(kind: Kind, value: str | None, high: bool) -> str | None:
    if value is None:
        return None
    if kind == "time":
        return _normalise_time(value, high=high)
    if kind == "datetime":
        return _normalise_datetime(value, high=high)
    return value


def _combine_date_time(conditions: list[Condition]) -> list[Condition]:
    """PS3.4 C.2.2.2.5.1: StudyDate and StudyTime both given as ranges match as one date-time range."""
    date = next((c for c in conditions if c.attribute.path == (STUDY_DATE,) and c.op == "range"), None)
    time = next((c for c in conditions if c.attribute.path == (STUDY_TIME,) and c.op == "range"), None)
    if date is None or time is None:
        return conditions
    low = date.low + (time.low or "000000.000000") if date.low else None
    high = date.high + (time.high or "235959.999999") if date.high else None
    combined = Condition(Attribute((STUDY_DATE, STUDY_TIME), "DT"), "range", low=low, high=high, parameter="StudyDate")
    return [c for c in conditions if c is not date and c is not time] + [combined]


def _parse_tags(values: Sequence[str], parameter: str) -> tuple[bool, list[int]]:
    include_all = False
    tags: list[int] = []
    for raw in values:
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() == "all":
                include_all = True
                continue
            tag = int(item, 16) if _HEX_RE.match(item) else tag_for_keyword(item)
            if tag is None:
                raise _bad(parameter, "names an attribute that is neither a DICOM keyword nor an 8-hex tag")
            tags.append(tag)
    return include_all, tags


def _integer(values: Sequence[str], parameter: str, *, minimum: int) -> int:
    if len(values) != 1:
        raise _bad(parameter, "must be given once")
    text = values[0].strip()
    if not re.fullmatch(r"\d{1,9}", text) or int(text) < minimum:
        raise _bad(parameter, f"must be a whole number of at least {minimum}")
    return int(text)


def parse_query(
    params: Sequence[tuple[str, str]],
    *,
    level: Level,
    study_uid: str | None,
    series_uid: str | None,
    behaviour: Behaviour,
    orderable: frozenset[int],
    extended: Mapping[int, ExtendedTag],
) -> SearchQuery:
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    qido = {name: values for name, values in grouped.items() if name.lower() in QIDO_PARAMETERS}
    lower = {name.lower(): values for name, values in qido.items()}
    warnings: list[str] = []

    fuzzy = False
    if "fuzzymatching" in lower:
        text = lower["fuzzymatching"][-1].strip().lower()
        if text not in ("true", "false"):
            raise _bad("fuzzymatching", "must be true or false")
        fuzzy = text == "true"

    limit = DEFAULT_LIMIT
    if "limit" in lower:
        limit = _integer(lower["limit"], "limit", minimum=1)
        if limit > behaviour.qido_max_limit:
            if behaviour.qido_strict_limit:
                raise _bad("limit", f"must be between 1 and {behaviour.qido_max_limit}")
            warnings.append(f"limit lowered to the maximum of {behaviour.qido_max_limit}")
            limit = behaviour.qido_max_limit
    offset = _integer(lower["offset"], "offset", minimum=0) if "offset" in lower else 0

    include_all, include = _parse_tags(lower.get("includefield", []), "includefield")

    order: list[Order] = []
    for raw in lower.get("orderby", []):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            descending = item.startswith("-")
            name = item.lstrip("+-")
            tag = int(name, 16) if _HEX_RE.match(name) else tag_for_keyword(name)
            if tag is None or tag not in orderable:
                raise _bad("orderby", f"can sort by: {', '.join(sorted(_keyword(t) for t in orderable))}")
            order.append(Order(tag, descending))

    conditions: list[Condition] = []
    seen: set[tuple[int, ...]] = set()
    for name, values in grouped.items():
        if name in qido:
            continue
        attribute = resolve_attribute(name, name, extended)
        if attribute.path in seen or len(values) > 1:
            raise _bad(name, "is given more than once")
        seen.add(attribute.path)
        if level == "study" and attribute.path == (MODALITY,):
            attribute = Attribute((MODALITIES_IN_STUDY,), "CS")  # OHIF sends Modality to /studies
        if behaviour.qido_only_searchable_attributes:
            _check_azure_searchable(attribute, name, level, extended)
        condition = parse_condition(attribute, values[0], name, fuzzy=fuzzy)
        if condition is not None:
            conditions.append(condition)
        elif attribute.top not in include:
            include.append(attribute.top)  # universal matching: return the attribute
        if condition is not None and attribute.top not in include:
            include.append(attribute.top)
    if study_uid is not None:
        conditions = [c for c in conditions if c.attribute.path != (STUDY_UID,)] + [
            Condition(Attribute((STUDY_UID,), "UI"), "eq", (study_uid,), parameter="study")
        ]
    if series_uid is not None:
        conditions = [c for c in conditions if c.attribute.path != (SERIES_UID,)] + [
            Condition(Attribute((SERIES_UID,), "UI"), "eq", (series_uid,), parameter="series")
        ]
    return SearchQuery(
        level=level,
        study_uid=study_uid,
        series_uid=series_uid,
        conditions=tuple(_combine_date_time(conditions)),
        include_all=include_all,
        include=tuple(dict.fromkeys(include)),
        limit=limit,
        offset=offset,
        order=tuple(order),
        warnings=tuple(warnings),
        extended=extended,
    )


def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def _check_azure_searchable(
    attribute: Attribute, parameter: str, level: Level, extended: Mapping[int, ExtendedTag]
) -> None:
    allowed: set[int] = set()
    for lv in LEVELS[: LEVELS.index(level) + 1]:
        allowed |= AZURE_SEARCHABLE[lv]
    allowed |= {t for t, e in extended.items() if LEVELS.index(e.level) <= LEVELS.index(level)}
    if len(attribute.path) > 1 or attribute.top not in allowed:
        raise InvalidQueryError(
            f"Query parameter '{parameter}' is not supported for searching at the {level} level.",
            code="InvalidQueryParameter",
        )


# -- response -------------------------------------------------------------------------------------------------


def return_tags(query: SearchQuery, behaviour: Behaviour) -> tuple[frozenset[int] | None, dict[Level, frozenset[int]]]:
    """(explicit tags to return or None for every stored one of its level, per-level wanted set)."""
    defaults = AZURE_DEFAULTS if behaviour.qido_azure_attribute_lists else STANDARD_DEFAULTS
    levels = LEVELS[: LEVELS.index(query.level) + 1]
    wanted: dict[Level, set[int]] = {lv: set(defaults[lv]) for lv in levels}
    if query.include_all and behaviour.qido_azure_attribute_lists:
        for lv in levels:
            wanted[lv] |= set(AZURE_ALL[lv])
    for tag in query.include:
        lv = tag_level(tag)
        target: Level = lv if lv in levels else query.level
        wanted[target].add(tag)
    everything = query.include_all and not behaviour.qido_azure_attribute_lists
    return (None if everything else frozenset().union(*wanted.values())), {k: frozenset(v) for k, v in wanted.items()}


def _vr(tag: int) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " or " in vr else vr


def select_attributes(
    metadata: Mapping[str, Any], level: Level, wanted: frozenset[int] | None, *, all_of_level: bool
) -> dict[str, Any]:
    """Attributes of ``level`` from one stored instance's DICOM JSON."""
    out: dict[str, Any] = {}
    if wanted is not None and not all_of_level:
        for tag in wanted:
            key = f"{tag:08X}"
            attr = metadata.get(key)
            if attr is not None:
                if "BulkDataURI" not in attr and "InlineBinary" not in attr:
                    out[key] = attr
            elif tag not in COMPUTED:
                vr = _vr(tag)
                if vr is not None:
                    out[key] = {"vr": vr}
        return out
    for key, attr in metadata.items():
        tag = int(key, 16)
        if "BulkDataURI" in attr or "InlineBinary" in attr:
            continue
        lv = tag_level(tag)
        if lv == level or (tag in ALWAYS_WITH_LEVEL) or (wanted is not None and tag in wanted):
            out[key] = attr
    return out


# -- orchestration ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    results: list[dict[str, Any]]
    truncated: bool
    warnings: tuple[str, ...]
    erroneous_tags: tuple[int, ...]


def _int_attr(value: int) -> dict[str, Any]:
    return {"vr": "IS", "Value": [value]}


async def run_search(
    index: SearchIndex, partition_key: int, query: SearchQuery, behaviour: Behaviour, base_url: str
) -> SearchOutcome:
    """Run ``query`` and build one DICOM JSON object per match (``base_url``: this partition's /v2 URL)."""
    hits, truncated = await index.search(partition_key, query)
    explicit, per_level = return_tags(query, behaviour)
    depth = LEVELS.index(query.level)
    levels = LEVELS[: depth + 1]
    watermarks: list[int] = []
    for h in hits:
        watermarks.append(h.study_watermark)
        if h.series_watermark is not None:
            watermarks.append(h.series_watermark)
        if h.watermark is not None:
            watermarks.append(h.watermark)
    keys = None if explicit is None else [f"{t:08X}" for t in explicit if t not in COMPUTED]
    docs = await index.documents(watermarks, keys)
    results: list[dict[str, Any]] = []
    for h in hits:
        obj: dict[str, Any] = {}
        sources: dict[Level, int | None] = {
            "study": h.study_watermark,
            "series": h.series_watermark,
            "instance": h.watermark,
        }
        for lv in levels:
            wm = sources[lv]
            doc = docs.get(wm, {}) if wm is not None else {}
            if explicit is None:
                obj.update(_all_of_level(doc, lv))
            else:
                obj.update(select_attributes(doc, lv, per_level[lv], all_of_level=False))
        wanted_all = explicit is None
        computed: dict[int, dict[str, Any]] = {
            MODALITIES_IN_STUDY: {"vr": "CS", "Value": h.modalities} if h.modalities else {"vr": "CS"},
            N_STUDY_SERIES: _int_attr(h.series_count),
            N_STUDY_INSTANCES: _int_attr(h.study_instances),
        }
        url = f"{base_url}/studies/{h.study_uid}"
        if h.series_uid is not None:
            computed[N_SERIES_INSTANCES] = _int_attr(h.series_instances or 0)
            url += f"/series/{h.series_uid}"
        if h.sop_uid is not None:
            url += f"/instances/{h.sop_uid}"
        computed[RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
        for tag, attr in computed.items():
            if wanted_all or (explicit is not None and tag in explicit):
                obj[f"{tag:08X}"] = attr
        results.append(dict(sorted(obj.items())))
    erroneous = tuple(
        sorted(
            {c.attribute.top for c in query.conditions if (e := query.extended.get(c.attribute.top)) and e.error_count}
        )
    )
    warnings = list(query.warnings)
    return SearchOutcome(results, truncated, tuple(warnings), erroneous)


def _all_of_level(doc: Mapping[str, Any], level: Level) -> dict[str, Any]:
    depth = LEVELS.index(level)
    out: dict[str, Any] = {}
    for key, attr in doc.items():
        if "BulkDataURI" in attr or "InlineBinary" in attr:
            continue
        tag = int(key, 16)
        tag_depth = LEVELS.index(tag_level(tag))
        if tag_depth == depth or tag in ALWAYS_WITH_LEVEL:
            out[key] = attr
    return out
