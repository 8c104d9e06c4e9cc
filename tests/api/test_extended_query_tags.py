"""Extended query tags (Azure v2 API) and operations: add -> 202 + operation -> reindex -> Ready, QIDO by
the tag before and after Ready, the validation rules, 409, private tags with their creator, per-instance
errors and the erroneous-dicom-attributes header, PATCH, DELETE, partitions, configurable QIDO limit."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydicom.dataset import Dataset

from dicomlake.app import create_app
from dicomlake.config import CompatibilityProfile, Settings
from dicomlake.jobs.reindex import ReindexWorker
from tests.api.test_stow import stow
from tests.factories import make_dataset, new_uid, to_bytes
from tests.helpers.asgi import running_app

pytestmark = pytest.mark.integration

ACME = "ACME 1.0"


def dataset(*, study: str | None = None, age: str | None = None, private: dict[int, tuple[str, str]] | None = None,
            creator: str = ACME) -> Dataset:  # fmt: skip
    d = make_dataset(study=study)
    if age is not None:
        d.PatientAge = age
    if private:
        block = d.private_block(0x0009, creator, create=True)
        for offset, (vr, value) in private.items():
            block.add_new(offset, vr, value)
    return d


async def store(client: httpx.AsyncClient, *datasets: Dataset, path: str = "/v2/studies") -> None:
    response = await stow(client, [to_bytes(d) for d in datasets], path=path)
    assert response.status_code == 200, response.text


async def add(client: httpx.AsyncClient, body: Any, status: int = 202) -> dict[str, Any]:
    response = await client.post("/v2/extendedquerytags", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_for(client: httpx.AsyncClient, href: str) -> dict[str, Any]:
    for _ in range(200):
        response = await client.get(href)
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202, response.text
        await asyncio.sleep(0.05)
    raise AssertionError("the operation did not finish")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as p:
        yield p


def no_worker(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, operations_worker=False, **changes)


async def test_add_reindexes_existing_instances_and_search_uses_the_tag(client: httpx.AsyncClient) -> None:
    s1, s2 = new_uid(), new_uid()
    await store(client, dataset(study=s1, age="030Y"), dataset(study=s1, age="030Y"), dataset(study=s2, age="045Y"))
    created = await add(client, [{"path": "PatientAge", "vr": "AS", "level": "Study"}])
    assert set(created) == {"id", "href"}
    assert created["href"].endswith(f"/v2/operations/{created['id']}")
    op = await wait_for(client, created["href"])
    assert op["operationId"] == created["id"]
    assert op["type"] == "reindex"
    assert op["status"] == "completed"
    assert op["percentComplete"] == 100
    assert op["resourceLocations"] == ["http://testserver/v2/extendedquerytags/00101010"]
    assert {"createdTime", "lastUpdatedTime"} <= set(op)

    tag = (await client.get("/v2/extendedquerytags/00101010")).json()
    assert tag == {"path": "00101010", "vr": "AS", "level": "Study", "status": "Ready", "queryStatus": "Enabled"}
    assert (await client.get("/v2/extendedquerytags/PatientAge")).json() == tag
    listed = await client.get("/v2/extendedquerytags")
    assert listed.status_code == 200
    assert listed.json() == [tag]

    found = (await client.get("/v2/studies?PatientAge=030Y")).json()
    assert [r["0020000D"]["Value"][0] for r in found] == [s1]
    # instances stored after the tag exists are indexed on commit
    s3 = new_uid()
    await store(client, dataset(study=s3, age="045Y"))
    found = (await client.get("/v2/studies?00101010=045Y")).json()
    assert sorted(r["0020000D"]["Value"][0] for r in found) == sorted([s2, s3])

    again = await client.post("/v2/extendedquerytags", json=[{"path": "00101010", "level": "Study"}])
    assert again.status_code == 409, again.text


async def test_azure_search_by_the_tag_only_once_ready(settings: Settings, pool: asyncpg.Pool) -> None:
    azure = no_worker(settings, compatibility=CompatibilityProfile.AZURE)
    async with running_app(create_app(azure)) as client:
        study = new_uid()
        await store(client, dataset(study=study, age="030Y"), dataset(age="040Y"))
        created = await add(client, [{"path": "00101010", "level": "study"}])
        running = await client.get(created["href"])
        assert running.status_code == 202
        assert running.json()["status"] == "notStarted"
        tag = (await client.get("/v2/extendedquerytags/00101010")).json()
        assert tag["status"] == "Adding"
        assert tag["operation"] == {"id": created["id"], "href": created["href"]}
        # Adding: not searchable yet in the azure profile (only its searchable attributes and Ready tags)
        assert (await client.get("/v2/studies?PatientAge=030Y")).status_code == 400

        worker = ReindexWorker(pool, batch_size=1)
        assert await worker.run_once() == 1

        done = await client.get(created["href"])
        assert done.status_code == 200
        assert done.json()["status"] == "completed"
        assert (await client.get("/v2/extendedquerytags/00101010")).json()["status"] == "Ready"
        found = await client.get("/v2/studies?PatientAge=030Y")
        assert found.status_code == 200
        assert [r["0020000D"]["Value"][0] for r in found.json()] == [study]

        # PATCH disable: the azure profile refuses the attribute again; enable brings it back
        patched = await client.patch("/v2/extendedquerytags/00101010", json={"queryStatus": "Disabled"})
        assert patched.status_code == 200
        assert patched.json()["queryStatus"] == "Disabled"
        assert (await client.get("/v2/studies?PatientAge=030Y")).status_code == 400
        patched = await client.patch("/v2/extendedquerytags/PatientAge", json={"queryStatus": "Enabled"})
        assert patched.json()["queryStatus"] == "Enabled"
        assert (await client.get("/v2/studies?PatientAge=030Y")).status_code == 200
        for bad in ({"queryStatus": "Off"}, {}, [], {"queryStatus": "Disabled", "level": "Series"}):
            response = await client.patch("/v2/extendedquerytags/00101010", json=bad)
            assert response.status_code == 400, bad
        assert (
            await client.patch("/v2/extendedquerytags/00101020", json={"queryStatus": "Disabled"})
        ).status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"path": "00101010", "level": "Study"}, "JSON array"),
        ([], "no extended query tag"),
        ([{"path": "NotAKeyword", "level": "Study"}], "not a DICOM keyword"),
        ([{"path": "00400275.00400009", "level": "Study"}], "sequence path"),
        ([{"level": "Study"}], "path is missing"),
        ([{"path": "00101010"}], "level"),
        ([{"path": "00101010", "level": "Patient"}], "level"),
        ([{"path": "00101010", "vr": "LO", "level": "Study"}], "not valid for 00101010"),
        ([{"path": "00101010", "vr": "XX", "level": "Study"}], "not valid for 00101010"),
        ([{"path": "00281050", "level": "Instance", "vr": "DS"}, {"path": "00180050", "level": "Series"}], ""),
        ([{"path": "ReferencedImageSequence", "level": "Instance"}], "not supported"),
        ([{"path": "00091001", "privateCreator": ACME, "level": "Instance"}], "needs its vr"),
        ([{"path": "00091001", "vr": "LO", "level": "Instance"}], "needs its privateCreator"),
        ([{"path": "00091001", "vr": "LO", "privateCreator": "a\\b", "level": "Instance"}], "valid LO"),
        ([{"path": "00091001", "vr": "OB", "privateCreator": ACME, "level": "Instance"}], "not supported"),
        ([{"path": "00101010", "privateCreator": ACME, "level": "Study"}], "standard attribute"),
        ([{"path": "PatientName", "level": "Study"}], "already supported"),
        ([{"path": "00020010", "level": "Study"}], "file meta"),
        ([{"path": "00101010", "level": "Study"}, {"path": "PatientAge", "level": "Study"}], "more than once"),
    ],
)
async def test_invalid_tags_are_refused_with_the_reason(client: httpx.AsyncClient, body: Any, reason: str) -> None:
    response = await client.post("/v2/extendedquerytags", json=body)
    if not reason:  # a valid body, as a control: the rules are not refusing everything
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InvalidExtendedQueryTag"
    assert reason in response.json()["message"]
    assert (await client.get("/v2/extendedquerytags")).json() == []


async def test_body_format_errors(client: httpx.AsyncClient) -> None:
    form = await client.post("/v2/extendedquerytags", content=b"[]", headers={"content-type": "text/plain"})
    assert form.status_code == 415
    broken = await client.post("/v2/extendedquerytags", content=b"[{", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["code"] == "InvalidJson"
    assert (await client.get("/v2/extendedquerytags/NotAKeyword")).status_code == 400
    assert (await client.get("/v2/extendedquerytags/00101010")).status_code == 404
    assert (await client.get("/v2/extendedquerytags/00101010/errors")).status_code == 404
    assert (await client.get("/v2/extendedquerytags?limit=0")).status_code == 400
    assert (await client.get("/v2/extendedquerytags?color=red")).status_code == 400
    assert (await client.get(f"/v2/operations/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/v2/operations/not-a-uuid")).status_code == 404


async def test_private_tag_with_creator_errors_and_header(client: httpx.AsyncClient) -> None:
    good, other, bad = new_uid(), new_uid(), new_uid()
    bad_instance = dataset(study=bad, private={0x01: ("LO", "X1"), 0x02: ("LO", "not-a-date")})
    await store(
        client,
        dataset(study=good, private={0x01: ("LO", "X1"), 0x02: ("LO", "20240102")}),
        dataset(study=other, private={0x01: ("LO", "X1"), 0x02: ("LO", "20240102")}, creator="OTHER"),
        bad_instance,
    )
    created = await add(
        client,
        [
            {"path": "00091001", "vr": "LO", "privateCreator": ACME, "level": "Instance"},
            {"path": "00091002", "vr": "DA", "privateCreator": ACME, "level": "Study"},
        ],
    )
    await wait_for(client, created["href"])

    # values of the same element under another private creator are not this tag's
    found = await client.get("/v2/instances?00091001=X1")
    assert found.status_code == 200
    assert sorted(r["0020000D"]["Value"][0] for r in found.json()) == sorted([good, bad])
    assert "erroneous-dicom-attributes" not in found.headers

    tag = (await client.get("/v2/extendedquerytags/00091002")).json()
    assert tag["privateCreator"] == ACME
    assert tag["errors"] == {"count": 1, "href": "http://testserver/v2/extendedquerytags/00091002/errors"}
    errors = await client.get(tag["errors"]["href"])
    assert errors.status_code == 200
    [error] = errors.json()
    assert error["studyInstanceUid"] == bad
    assert error["seriesInstanceUid"] == bad_instance.SeriesInstanceUID
    assert error["sopInstanceUid"] == bad_instance.SOPInstanceUID
    assert error["partitionName"] == "Microsoft.Default"
    assert error["errorMessage"] == "The value is not valid for VR DA."
    assert error["createdTime"].endswith("Z")

    dated = await client.get("/v2/studies?00091002=20240102")
    assert [r["0020000D"]["Value"][0] for r in dated.json()] == [good]
    assert dated.headers["erroneous-dicom-attributes"] == "00091002"

    # deleting the erroneous instance removes its error (and the header)
    assert (await client.delete(f"/v2/studies/{bad}")).status_code == 204
    assert (await client.get("/v2/extendedquerytags/00091002/errors")).json() == []
    assert "errors" not in (await client.get("/v2/extendedquerytags/00091002")).json()
    assert "erroneous-dicom-attributes" not in (await client.get("/v2/studies?00091002=20240102")).headers


async def test_delete_removes_the_tag_and_its_values(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await store(client, dataset(age="030Y"), dataset(age="031Y", private={0x02: ("LO", "bad")}))
    created = await add(
        client,
        [{"path": "PatientAge", "level": "Study"}, {"path": "00091002", "vr": "DA", "privateCreator": ACME,
                                                    "level": "Study"}],
    )  # fmt: skip
    await wait_for(client, created["href"])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 2
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_errors") == 1
    assert (await client.delete("/v2/extendedquerytags/PatientAge")).status_code == 204
    assert (await client.delete("/v2/extendedquerytags/00091002")).status_code == 204
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_values") == 0
        assert await conn.fetchval("SELECT count(*) FROM extended_query_tag_errors") == 0
    assert (await client.get("/v2/extendedquerytags/00101010")).status_code == 404
    assert (await client.delete("/v2/extendedquerytags/00101010")).status_code == 404
    assert (await client.get("/v2/extendedquerytags")).json() == []
    # the tag can be added again
    again = await add(client, [{"path": "PatientAge", "level": "Study"}])
    assert (await wait_for(client, again["href"]))["status"] == "completed"


async def test_values_are_per_partition(client: httpx.AsyncClient) -> None:
    here, there = new_uid(), new_uid()
    await store(client, dataset(study=here, age="030Y"))
    await store(client, dataset(study=there, age="030Y"), path="/v2/partitions/p1/studies")
    await wait_for(client, (await add(client, [{"path": "PatientAge", "level": "Study"}]))["href"])
    default = (await client.get("/v2/studies?PatientAge=030Y")).json()
    p1 = (await client.get("/v2/partitions/p1/studies?PatientAge=030Y")).json()
    assert [r["0020000D"]["Value"][0] for r in default] == [here]
    assert [r["0020000D"]["Value"][0] for r in p1] == [there]
    # the definitions are global: not under a partition
    assert (await client.get("/v2/partitions/p1/extendedquerytags")).status_code in (404, 405)


async def test_qido_max_limit_is_configurable(settings: Settings) -> None:
    async with running_app(create_app(dataclasses.replace(settings, qido_max_limit=5000))) as client:
        response = await client.get("/v2/studies?limit=4000")
        assert response.status_code == 200
        assert "lowered" not in response.headers.get("warning", "")
        response = await client.get("/v2/studies?limit=6000")
        assert "lowered to the maximum of 5000" in response.headers["warning"]


async def test_qido_default_max_limit(client: httpx.AsyncClient, azure_client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/studies?limit=1001")
    assert "lowered to the maximum of 1000" in response.headers["warning"]
    assert (await azure_client.get("/v2/studies?limit=201")).status_code == 400


def test_settings_read_the_limit_and_worker_switch() -> None:
    from dicomlake.errors import ConfigurationError

    base = {"DICOM_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "DICOM_DATABASE_URL": "postgresql://x@h/d"}
    assert Settings.from_env(base).qido_max_limit == 1000
    assert Settings.from_env(base).operations_worker is True
    assert Settings.from_env(base | {"DICOM_QIDO_MAX_LIMIT": "20000"}).qido_max_limit == 20000
    assert Settings.from_env(base | {"DICOM_OPERATIONS_WORKER": "false"}).operations_worker is False
    for bad in ("999", "100001", "x"):
        with pytest.raises(ConfigurationError, match="DICOM_QIDO_MAX_LIMIT"):
            Settings.from_env(base | {"DICOM_QIDO_MAX_LIMIT": bad})
