"""Search index adapter: the query model QIDO-RS compiles to, its translation to SQL over the study and
series search tables (migration 0002, maintained by triggers on ``instances``) and ``instances``
itself, the bulk load path, and extended query tag look-ups.

Indexed attributes are typed columns (btree on UIDs, IDs and dates; trigram GIN on normalised names,
PatientID and StudyDescription; GIN on ModalitiesInStudy). Any other attribute is matched in the
stored DICOM JSON (``jsonb_path_query``), or in ``extended_query_tag_values`` for an extended query tag.
Only committed instances (status 2) are ever seen.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import asyncpg
import orjson

from dicomlake.errors import DatabaseUnavailableError

Level = Literal["study", "series", "instance"]
LEVELS: tuple[Level, ...] = ("study", "series", "instance")
#: Comparison kind of a value, from its VR.
Kind = Literal["text", "pn", "uid", "date", "time", "datetime", "num", "sq", "binary"]
Op = Literal["eq", "in", "like", "range", "fuzzy"]

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_NUM_VRS = {"IS", "DS", "SL", "SS", "UL", "US", "FL", "FD", "SV", "UV"}


def vr_kind(vr: str) -> Kind:
    simple: dict[str, Kind] = {"PN": "pn", "UI": "uid", "DA": "date", "TM": "time", "DT": "datetime", "SQ": "sq"}
    if vr in simple:
        return simple[vr]
    if vr in _NUM_VRS:
        return "num"
    if vr in _BINARY_VRS or " or " in vr:
        return "binary"
    return "text"


@dataclass(frozen=True, slots=True)
class Attribute:
    """A (possibly nested) attribute: ``path`` of tags, the last one's VR."""

    path: tuple[int, ...]
    vr: str

    @property
    def tag(self) -> int:
        return self.path[-1]

    @property
    def top(self) -> int:
        return self.path[0]

    @property
    def kind(self) -> Kind:
        return vr_kind(self.vr)


@dataclass(frozen=True, slots=True)
class Condition:
    """``eq``/``in``: values; ``like``: one pattern (SQL LIKE, or the raw * ? value for PN); ``range``:
    normalised low/high (either may be None); ``fuzzy``: PN tokens to prefix-match name components."""

    attribute: Attribute
    op: Op
    values: tuple[str, ...] = ()
    low: str | None = None
    high: str | None = None
    parameter: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    tag: int
    descending: bool


@dataclass(frozen=True, slots=True)
class ExtendedTag:
    """An extended query tag search may use (status Ready, query Enabled)."""

    tag_key: int
    tag: int
    vr: str
    level: Level
    private_creator: str | None
    error_count: int


@dataclass(frozen=True, slots=True)
class SearchQuery:
    level: Level
    study_uid: str | None
    series_uid: str | None
    conditions: tuple[Condition, ...]
    include_all: bool
    include: tuple[int, ...]
    limit: int
    offset: int
    order: tuple[Order, ...]
    warnings: tuple[str, ...] = ()
    extended: Mapping[int, ExtendedTag] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    study_uid: str
    study_watermark: int
    series_count: int
    study_instances: int
    modalities: list[str]
    series_uid: str | None = None
    series_watermark: int | None = None
    series_instances: int | None = None
    sop_uid: str | None = None
    watermark: int | None = None


@dataclass(frozen=True, slots=True)
class _Column:
    level: Level
    expr: str  # "{a}" is the table alias
    kind: Kind | Literal["array"]
    order_expr: str | None = None


_ALIAS: dict[Level, str] = {"study": "st", "series": "se", "instance": "i"}
_INSTANCE_NUMBER = "dl_num({a}.metadata #>> '{{00200013,Value,0}}')"

#: Indexed (typed) attributes, by tag path.
COLUMNS: dict[tuple[int, ...], _Column] = {
    (0x0020000D,): _Column("study", "{a}.study_uid", "uid"),
    (0x00100020,): _Column("study", "{a}.patient_id", "text"),
    (0x00100010,): _Column("study", "{a}.patient_name_norm", "pn", "{a}.patient_name"),
    (0x00100030,): _Column("study", "{a}.patient_birth_date", "date"),
    (0x00100040,): _Column("study", "{a}.patient_sex", "text"),
    (0x00080020,): _Column("study", "{a}.study_date", "date"),
    (0x00080030,): _Column("study", "{a}.study_time", "time"),
    (0x00080020, 0x00080030): _Column("study", "{a}.study_datetime", "datetime"),
    (0x00080050,): _Column("study", "{a}.accession_number", "text"),
    (0x00200010,): _Column("study", "{a}.study_id", "text"),
    (0x00081030,): _Column("study", "{a}.study_description", "text"),
    (0x00080090,): _Column("study", "{a}.referring_physician_name_norm", "pn", "{a}.referring_physician_name"),
    (0x00080061,): _Column("study", "{a}.modalities", "array"),
    (0x00201206,): _Column("study", "{a}.series_count", "num"),
    (0x00201208,): _Column("study", "{a}.instance_count", "num"),
    (0x0020000E,): _Column("series", "{a}.series_uid", "uid"),
    (0x00080060,): _Column("series", "{a}.modality", "text"),
    (0x0008103E,): _Column("series", "{a}.series_description", "text"),
    (0x00200011,): _Column("series", "{a}.series_number", "num"),
    (0x00400244,): _Column("series", "{a}.pps_start_date", "date"),
    (0x00400245,): _Column("series", "{a}.pps_start_time", "time"),
    (0x00081090,): _Column("series", "{a}.manufacturer_model_name", "text"),
    (0x00201209,): _Column("series", "{a}.instance_count", "num"),
    (0x00080018,): _Column("instance", "{a}.sop_uid", "uid"),
    (0x00080016,): _Column("instance", "{a}.sop_class_uid", "uid"),
    (0x00200013,): _Column("instance", _INSTANCE_NUMBER, "num"),
}


def orderable(level: Level) -> frozenset[int]:
    """Tags ``orderby`` accepts at ``level``: indexed attributes of that level and the levels above."""
    depth = LEVELS.index(level)
    return frozenset(
        path[0]
        for path, col in COLUMNS.items()
        if len(path) == 1 and LEVELS.index(col.level) <= depth and col.kind != "array"
    )


def indexed(level: Level) -> frozenset[int]:
    depth = LEVELS.index(level)
    return frozenset(p[0] for p, c in COLUMNS.items() if len(p) == 1 and LEVELS.index(c.level) <= depth)


class _Args:
    def __init__(self, first: Any) -> None:
        self.values: list[Any] = [first]

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _re_escape(value: str) -> str:
    """Escape PostgreSQL ARE metacharacters (wildcards * and ? become escaped too)."""
    return "".join("\\" + ch if ch in ".+*?^$(){}|[]\\" else ch for ch in value)


def _predicate(expr: str, kind: str, c: Condition, args: _Args) -> str:
    """SQL for condition ``c`` on ``expr`` whose values are in the form of ``kind``."""
    if kind == "array":
        if c.op == "eq":
            return f"{expr} @> ARRAY[{args.add(c.values[0])}::text]"
        if c.op == "in":
            return f"{expr} && {args.add(list(c.values))}::text[]"
        return f"EXISTS (SELECT 1 FROM unnest({expr}) AS m(v) WHERE m.v LIKE {args.add(c.values[0])})"
    if kind == "pn":
        # Values were normalised by dl_norm (see SearchIndex.search). A LIKE '%...%' superset first: cheap,
        # and served by the trigram index; then the exact rule as a regular expression.
        if c.op == "fuzzy":
            parts = []
            for token in c.values:
                parts.append(f"{expr} LIKE {args.add('%' + _like_escape(token) + '%')}::text")
                parts.append(f"{expr} ~ {args.add('(^|[=^ ,-])' + _re_escape(token))}::text")
            return "(" + " AND ".join(parts) + ")"
        alternatives = []
        for v in c.values:
            like = "%" + _like_escape(v).replace("*", "%").replace("?", "_") + "%"
            regex = "(^|=)" + _re_escape(v).replace("\\*", "[^=]*").replace("\\?", "[^=]") + "($|=)"
            alternatives.append(f"({expr} LIKE {args.add(like)}::text AND {expr} ~ {args.add(regex)}::text)")
        return alternatives[0] if len(alternatives) == 1 else "(" + " OR ".join(alternatives) + ")"
    if kind == "num":
        if c.op == "in":
            return f"{expr} = ANY({args.add([decimal.Decimal(v) for v in c.values])}::numeric[])"
        return f"{expr} = {args.add(decimal.Decimal(c.values[0]))}::numeric"
    if c.op == "range":
        parts = []
        if c.low is not None:
            parts.append(f"{expr} >= {args.add(c.low)}::text")
        if c.high is not None:
            parts.append(f"{expr} <= {args.add(c.high)}::text")
        return "(" + " AND ".join(parts) + ")"
    if c.op == "in":
        return f"{expr} = ANY({args.add(list(c.values))}::text[])"
    if c.op == "like":
        return f"{expr} LIKE {args.add(c.values[0])}::text"
    return f"{expr} = {args.add(c.values[0])}::text"


def _json_value(kind: Kind) -> str:
    return {
        "pn": "dl_norm(dl_pn(v.j))",
        "date": "dl_da(v.j #>> '{}')",
        "time": "dl_tm(v.j #>> '{}')",
        "datetime": "dl_dt(v.j #>> '{}')",
        "num": "dl_num(v.j #>> '{}')",
    }.get(kind, "(v.j #>> '{}')")


def _json_path(path: Sequence[int]) -> str:
    return "$" + "".join(f'."{t:08X}"."Value"[*]' for t in path)


def _scope_join(outer: Level, inner_alias: str) -> str:
    """Conditions tying rows of a deeper level (alias ``inner_alias``) to the current row of ``outer``."""
    if outer == "study":
        return f"{inner_alias}.partition_key = st.partition_key AND {inner_alias}.study_uid = st.study_uid"
    return (
        f"{inner_alias}.partition_key = se.partition_key AND {inner_alias}.study_uid = se.study_uid "
        f"AND {inner_alias}.series_uid = se.series_uid"
    )


def _condition_sql(level: Level, c: Condition, args: _Args, extended: Mapping[int, ExtendedTag]) -> str:
    depth = LEVELS.index(level)
    column = COLUMNS.get(c.attribute.path)
    if column is not None:
        col_depth = LEVELS.index(column.level)
        if col_depth <= depth:
            return _predicate(column.expr.format(a=_ALIAS[column.level]), column.kind, c, args)
        if column.level == "series":
            inner = _predicate(column.expr.format(a="se2"), column.kind, c, args)
            return f"EXISTS (SELECT 1 FROM series_search se2 WHERE {_scope_join(level, 'se2')} AND {inner})"
        inner = _predicate(column.expr.format(a="i2"), column.kind, c, args)
        return f"EXISTS (SELECT 1 FROM instances i2 WHERE {_scope_join(level, 'i2')} AND i2.status = 2 AND {inner})"
    ext = extended.get(c.attribute.top) if len(c.attribute.path) == 1 else None
    if ext is not None:
        value = {"num": "dl_num(v.value)"}.get(c.attribute.kind, "v.value")
        tie = {
            "study": "v.study_uid = st.study_uid",
            "series": "v.study_uid = se.study_uid AND v.series_uid = se.series_uid",
            "instance": "v.watermark = i.watermark",
        }[LEVELS[min(depth, LEVELS.index(ext.level))]]
        pred = _predicate(value, c.attribute.kind, c, args)
        return (
            f"EXISTS (SELECT 1 FROM extended_query_tag_values v WHERE v.tag_key = {int(ext.tag_key)} "
            f"AND v.partition_key = $1 AND {tie} AND {pred})"
        )
    path = args.add(_json_path(c.attribute.path))
    pred = _predicate(_json_value(c.attribute.kind), c.attribute.kind, c, args)
    top = f"{c.attribute.top:08X}"
    if level == "instance":
        return (
            f"(i.metadata ? '{top}' AND EXISTS (SELECT 1 FROM jsonb_path_query(i.metadata, {path}::jsonpath) "
            f"AS v(j) WHERE {pred}))"
        )
    return (
        f"EXISTS (SELECT 1 FROM instances i2 WHERE {_scope_join(level, 'i2')} AND i2.status = 2 "
        f"AND i2.metadata ? '{top}' AND EXISTS (SELECT 1 FROM jsonb_path_query(i2.metadata, {path}::jsonpath) "
        f"AS v(j) WHERE {pred}))"
    )


_SELECT = {
    "study": "st.study_uid, st.latest_watermark AS study_wm, st.series_count, st.instance_count AS study_n, "
    "st.modalities",
    "series": ", se.series_uid, se.latest_watermark AS series_wm, se.instance_count AS series_n",
    "instance": ", i.sop_uid, i.watermark",
}
_FROM = {
    "study": "study_search st WHERE st.partition_key = $1",
    "series": "series_search se JOIN study_search st ON st.partition_key = se.partition_key "
    "AND st.study_uid = se.study_uid WHERE se.partition_key = $1",
    "instance": "instances i JOIN series_search se ON se.partition_key = i.partition_key "
    "AND se.study_uid = i.study_uid AND se.series_uid = i.series_uid "
    "JOIN study_search st ON st.partition_key = i.partition_key AND st.study_uid = i.study_uid "
    "WHERE i.partition_key = $1 AND i.status = 2",
}


def build_sql(partition_key: int, query: SearchQuery) -> tuple[str, list[Any]]:
    """The SQL and arguments of ``query`` (one row more than ``limit``, to tell if results were cut)."""
    level = query.level
    args = _Args(partition_key)
    select = _SELECT["study"]
    if level in ("series", "instance"):
        select += _SELECT["series"]
    if level == "instance":
        select += _SELECT["instance"]
    where = [_condition_sql(level, c, args, query.extended) for c in query.conditions]
    order: list[str] = []
    for o in query.order:
        column = COLUMNS[(o.tag,)]
        expr = (column.order_expr or column.expr).format(a=_ALIAS[column.level])
        order.append(f"{expr} DESC NULLS LAST" if o.descending else f"{expr} ASC NULLS LAST")
    if level == "study":
        order.append("st.study_uid")
    elif level == "series":
        order += (
            ["se.series_number", "se.series_uid"] if query.study_uid is not None else ["se.study_uid", "se.series_uid"]
        )
    else:
        order += ["i.study_uid", "i.series_uid", _INSTANCE_NUMBER.format(a="i"), "i.sop_uid"]
    sql = f"SELECT {select} FROM {_FROM[level]}"
    if where:
        sql += " AND " + " AND ".join(where)
    sql += f" ORDER BY {', '.join(order)} LIMIT {args.add(query.limit + 1)} OFFSET {args.add(query.offset)}"
    return sql, args.values


async def _normalise_names(conn: Any, query: SearchQuery) -> SearchQuery:
    """PN values in the form the index stores (dl_norm: lower case, accents removed), as constants so
    the planner can use the trigram index."""
    raw = [v for c in query.conditions if c.attribute.kind == "pn" for v in c.values]
    if not raw:
        return query
    normalised: list[str] = await conn.fetchval(
        "SELECT array_agg(dl_norm(u.x) ORDER BY u.n) FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n)", raw
    )
    it = iter(normalised)
    conditions = tuple(
        replace(c, values=tuple(next(it) for _ in c.values)) if c.attribute.kind == "pn" else c
        for c in query.conditions
    )
    return replace(query, conditions=conditions)


def _db_errors(e: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"The index database is unavailable ({type(e).__name__}).")


_DB_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)


class SearchIndex:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0, statement_timeout_ms: int = 30_000) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._statement_timeout_ms = statement_timeout_ms

    def _acquire(self) -> Any:
        return self._pool.acquire(timeout=self._acquire_timeout)

    async def search(self, partition_key: int, query: SearchQuery) -> tuple[list[Hit], bool]:
        """Matching rows in order, and whether more than ``query.limit`` matched."""
        try:
            async with self._acquire() as conn:
                query = await _normalise_names(conn, query)
                sql, args = build_sql(partition_key, query)
                rows = await conn.fetch(sql, *args)
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        hits = [
            Hit(
                study_uid=r["study_uid"],
                study_watermark=r["study_wm"],
                series_count=r["series_count"],
                study_instances=r["study_n"],
                modalities=list(r["modalities"]),
                series_uid=r.get("series_uid"),
                series_watermark=r.get("series_wm"),
                series_instances=r.get("series_n"),
                sop_uid=r.get("sop_uid"),
                watermark=r.get("watermark"),
            )
            for r in rows[: query.limit]
        ]
        return hits, len(rows) > query.limit

    async def explain(self, partition_key: int, query: SearchQuery) -> str:
        async with self._acquire() as conn:
            query = await _normalise_names(conn, query)
            sql, args = build_sql(partition_key, query)
            rows = await conn.fetch("EXPLAIN " + sql, *args)
        return "\n".join(r[0] for r in rows)

    async def documents(self, watermarks: Iterable[int], keys: Iterable[str] | None) -> dict[int, dict[str, Any]]:
        """Stored DICOM JSON of instances by watermark: only ``keys`` (8-hex tags), or all when None."""
        wanted = sorted(set(watermarks))
        if not wanted:
            return {}
        try:
            async with self._acquire() as conn:
                if keys is None:
                    rows = await conn.fetch(
                        "SELECT watermark, metadata::text AS m FROM instances WHERE watermark = ANY($1::bigint[])",
                        wanted,
                    )
                else:
                    rows = await conn.fetch(
                        "SELECT watermark, (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(metadata) e "
                        "WHERE e.key = ANY($2::text[]))::text AS m FROM instances WHERE watermark = ANY($1::bigint[])",
                        wanted,
                        sorted(set(keys)),
                    )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return {r["watermark"]: (orjson.loads(r["m"]) if r["m"] else {}) for r in rows}

    async def extended_tags(self, *, ready_only: bool = True) -> dict[int, ExtendedTag]:
        """Extended query tags search may use, by tag."""
        try:
            async with self._acquire() as conn:
                rows = await conn.fetch(
                    "SELECT tag_key, path, vr, level, private_creator, error_count FROM extended_query_tags "
                    "WHERE status = 'Ready' AND query_status = 'Enabled'"
                    if ready_only
                    else "SELECT tag_key, path, vr, level, private_creator, error_count FROM extended_query_tags"
                )
        except _DB_DOWN as e:
            raise _db_errors(e) from e
        return {
            int(r["path"], 16): ExtendedTag(
                tag_key=r["tag_key"],
                tag=int(r["path"], 16),
                vr=r["vr"],
                level=r["level"].lower(),
                private_creator=r["private_creator"],
                error_count=r["error_count"],
            )
            for r in rows
        }


async def bulk_load(conn: asyncpg.Connection, partition_key: int, rows: Iterable[Sequence[Any]]) -> int:
    """The index's bulk path: COPY committed instances in one statement, so the search triggers
    refresh every touched study and series once, set-based. ``rows``: (study_uid, series_uid, sop_uid,
    sop_class_uid, metadata dict). Returns the number of rows loaded."""
    items = list(rows)
    if not items:
        return 0
    watermarks: list[int] = await conn.fetchval(
        "SELECT array_agg(nextval('instance_watermark_seq')) FROM generate_series(1, $1)", len(items)
    )
    records = [
        (
            wm,
            partition_key,
            study,
            series,
            sop,
            2,
            sop_class,
            f"bulk/{study}/{series}/{sop}.dcm",
            orjson.dumps(meta).decode(),
        )
        for wm, (study, series, sop, sop_class, meta) in zip(watermarks, items, strict=True)
    ]
    await conn.copy_records_to_table(
        "instances",
        records=records,
        columns=[
            "watermark",
            "partition_key",
            "study_uid",
            "series_uid",
            "sop_uid",
            "status",
            "sop_class_uid",
            "blob_name",
            "metadata",
        ],
    )
    return len(records)
