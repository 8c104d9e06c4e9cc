"""Search index: trigger maintenance on commit, replace and delete; pending rows invisible; the bulk
path; the query plans use the indexes (EXPLAIN); dicomweb-client's search methods against the service."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pydicom
import pytest

from dicomlake.index.search import Attribute, Condition, SearchIndex, SearchQuery, build_sql, bulk_load
from tests.e2e.conftest import service  # noqa: F401 (fixture)
from tests.factories import make_dataset, to_bytes
from tests.helpers.server import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


def _meta(patient: str, name: str, date: str, modality: str, number: int) -> dict[str, Any]:
    return {
        "00080020": {"vr": "DA", "Value": [date]},
        "00080050": {"vr": "SH", "Value": [f"ACC{patient}"]},
        "00080060": {"vr": "CS", "Value": [modality]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": {"vr": "LO", "Value": [patient]},
        "00200013": {"vr": "IS", "Value": [number]},
    }


def _surname(n: int) -> str:
    return "X" + hashlib.sha256(str(n).encode()).hexdigest()[:7]


async def _seed(conn: asyncpg.Connection, studies: int) -> None:
    rows = []
    for s in range(studies):
        for se in range(2):
            for n in range(2):
                rows.append(
                    (
                        f"1.2.{s}",
                        f"1.2.{s}.{se}",
                        f"1.2.{s}.{se}.{n}",
                        "1.2.840.10008.5.1.4.1.1.2",
                        _meta(f"P{s}", f"{_surname(s)}^Given{s % 7}", f"2020{(s % 12) + 1:02d}15", ("CT", "MR")[se], n),
                    )
                )
    async with conn.transaction():
        await bulk_load(conn, 1, rows)
    await conn.execute("ANALYZE")


async def test_bulk_load_and_trigger_maintenance(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _seed(conn, 50)
        assert await conn.fetchval("SELECT count(*) FROM study_search") == 50
        assert await conn.fetchval("SELECT count(*) FROM series_search") == 100
        row = await conn.fetchrow("SELECT * FROM study_search WHERE study_uid = '1.2.7'")
        assert (row["series_count"], row["instance_count"], row["modalities"]) == (2, 4, ["CT", "MR"])
        assert row["patient_name_norm"] == _surname(7).lower() + "^given0"
        # a pending row is invisible; committing it updates counts
        await conn.execute(
            "INSERT INTO instances (watermark, partition_key, study_uid, series_uid, sop_uid, status, sop_class_uid, "
            "blob_name) VALUES (nextval('instance_watermark_seq'), 1, '1.2.7', '1.2.7.9', '1.2.7.9.0', 1, '1.2', 'b')"
        )
        assert await conn.fetchval("SELECT instance_count FROM study_search WHERE study_uid = '1.2.7'") == 4
        await conn.execute(
            "UPDATE instances SET status = 2, metadata = $1::jsonb WHERE sop_uid = '1.2.7.9.0'",
            '{"00080060": {"vr": "CS", "Value": ["US"]}, "00100020": {"vr": "LO", "Value": ["P7-new"]}}',
        )
        row = await conn.fetchrow("SELECT * FROM study_search WHERE study_uid = '1.2.7'")
        assert (row["series_count"], row["instance_count"], row["modalities"]) == (3, 5, ["CT", "MR", "US"])
        assert row["patient_id"] == "P7-new"  # latest instance wins
        # deleting committed rows (as DELETE or a replacing store does) removes them from search
        await conn.execute("DELETE FROM instances WHERE sop_uid = '1.2.7.9.0'")
        row = await conn.fetchrow("SELECT * FROM study_search WHERE study_uid = '1.2.7'")
        assert (row["series_count"], row["instance_count"], row["patient_id"]) == (2, 4, "P7")
        await conn.execute("DELETE FROM instances WHERE study_uid = '1.2.7' AND series_uid = '1.2.7.0'")
        assert await conn.fetchval("SELECT modalities FROM study_search WHERE study_uid = '1.2.7'") == ["MR"]
        await conn.execute("DELETE FROM instances WHERE study_uid = '1.2.7'")
        assert await conn.fetchval("SELECT count(*) FROM study_search WHERE study_uid = '1.2.7'") == 0
        assert await conn.fetchval("SELECT count(*) FROM series_search WHERE study_uid = '1.2.7'") == 0


async def test_concurrent_commits_in_one_study_keep_counts(pool: asyncpg.Pool) -> None:
    async def commit(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await bulk_load(conn, 1, [("9.9", f"9.9.{i % 3}", f"9.9.{i % 3}.{i}", "1.2", {})])

    await asyncio.gather(*(commit(i) for i in range(12)))
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT series_count, instance_count FROM study_search WHERE study_uid = '9.9'")
        assert (row["series_count"], row["instance_count"]) == (3, 12)


def _query(level: str, *conditions: Condition) -> SearchQuery:
    return SearchQuery(level, None, None, conditions, False, (), 100, 0, ())  # type: ignore[arg-type]


async def test_plans_use_the_indexes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _seed(conn, 3000)
        # Trigram indexes pay off on a realistic table size: add 40,000 study rows directly (plan test only).
        await conn.execute(
            "INSERT INTO study_search (partition_key, study_uid, latest_watermark, series_count, instance_count, "
            "patient_id, patient_name, patient_name_norm) SELECT 1, '7.' || g, 0, 1, 1, 'Q' || g, md5(g::text), "
            "md5(g::text) FROM generate_series(1, 40000) g"
        )
        await conn.execute("ANALYZE")
    index = SearchIndex(pool)
    cases = {
        "study_search_patient_id": _query("study", Condition(Attribute((0x00100020,), "LO"), "eq", ("P17",))),
        "study_search_accession": _query("study", Condition(Attribute((0x00080050,), "SH"), "eq", ("ACCP17",))),
        "study_search_pkey": _query("study", Condition(Attribute((0x0020000D,), "UI"), "eq", ("1.2.17",))),
        "study_search_patient_name_trgm": _query(
            "study", Condition(Attribute((0x00100010,), "PN"), "like", (_surname(17)[:6] + "*",))
        ),
        "study_search_patient_id_trgm": _query(
            "study", Condition(Attribute((0x00100020,), "LO"), "like", ("%P2987%",))
        ),
        "series_search_uid": _query("series", Condition(Attribute((0x0020000E,), "UI"), "eq", ("1.2.17.1",))),
        "instances_search_sop": _query("instance", Condition(Attribute((0x00080018,), "UI"), "eq", ("1.2.17.1.1",))),
    }
    for index_name, query in cases.items():
        plan = await index.explain(1, query)
        if "trgm" in index_name:  # synthetic hex names share trigrams: check the index can serve the query
            sql, args = build_sql(1, query)
            async with pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")
                plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
        assert index_name in plan, (index_name, plan)
        assert "Seq Scan on study_search" not in plan, plan
    scoped = SearchQuery(
        "instance",
        "1.2.17",
        "1.2.17.1",
        (
            Condition(Attribute((0x0020000D,), "UI"), "eq", ("1.2.17",)),
            Condition(Attribute((0x0020000E,), "UI"), "eq", ("1.2.17.1",)),
        ),
        False,
        (),
        10,
        0,
        (),
    )
    plan = await index.explain(1, scoped)
    assert "Seq Scan on instances" not in plan, plan


async def test_dicomweb_client_search(service: ServiceProcess) -> None:  # noqa: F811
    from dicomweb_client.api import DICOMwebClient

    study = pydicom.dcmread(io.BytesIO(to_bytes(make_dataset(patient_name="Client^Test", patient_id="DWC-1"))))
    client = DICOMwebClient(url=f"{service.base_url}/v2")
    await asyncio.to_thread(client.store_instances, [study])

    studies = await asyncio.to_thread(
        client.search_for_studies, search_filters={"PatientName": "client*"}, fuzzymatching=False, fields=["all"]
    )
    assert [s["0020000D"]["Value"][0] for s in studies] == [study.StudyInstanceUID]
    series = await asyncio.to_thread(client.search_for_series, study.StudyInstanceUID)
    assert series[0]["0020000E"]["Value"] == [study.SeriesInstanceUID]
    instances = await asyncio.to_thread(
        client.search_for_instances, study.StudyInstanceUID, study.SeriesInstanceUID, limit=10, offset=0
    )
    assert instances[0]["00080018"]["Value"] == [study.SOPInstanceUID]
    fuzzy = await asyncio.to_thread(
        client.search_for_studies, search_filters={"PatientName": "tes"}, fuzzymatching=True
    )
    assert len(fuzzy) == 1
    assert await asyncio.to_thread(client.search_for_studies, search_filters={"PatientID": "nobody"}) == []
