"""QIDO-RS: routes and levels, every matching rule, includefield, paging, orderby, character sets,
percent-encoding, errors, and the Azure profile."""

from __future__ import annotations

import random
import string
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.api.test_stow import stow
from tests.factories import make_dataset, new_uid, to_bytes

pytestmark = pytest.mark.integration

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


def ds(**attrs: Any) -> Dataset:
    base = {k: attrs.pop(k) for k in ("study", "series", "patient_id", "patient_name", "modality") if k in attrs}
    d = make_dataset(**base)
    for keyword, value in attrs.items():
        setattr(d, keyword, value)
    return d


async def store(client: httpx.AsyncClient, *datasets: Dataset, path: str = "/v2/studies") -> None:
    response = await stow(client, [to_bytes(d) for d in datasets], path=path)
    assert response.status_code == 200, response.text


async def search(client: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    response = await client.get(url)
    assert response.status_code == status, (url, response.text)
    if status == 200:
        assert response.headers["content-type"] == "application/dicom+json"
        return response.json()
    return response


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r[tag]["Value"][0] for r in results]


@pytest.fixture
async def corpus(client: httpx.AsyncClient) -> dict[str, Any]:
    """Two studies: A (CT + MR series, 2 instances each, Jane Doe), B (one US instance, Jörg Müller)."""
    a, b = new_uid(), new_uid()
    ct, mr, us = new_uid(), new_uid(), new_uid()
    common_a = {
        "study": a,
        "patient_id": "PID-001",
        "patient_name": "Doe^Jane",
        "StudyDate": "20240131",
        "StudyTime": "101500",
        "AccessionNumber": "ACC-1",
        "StudyID": "S1",
        "PatientSex": "F",
        "StudyDescription": "CT chest",
    }
    items = [
        ds(**common_a, series=ct, modality="CT", SeriesNumber=2, InstanceNumber=n, BodyPartExamined="CHEST")
        for n in (2, 1)
    ] + [ds(**common_a, series=mr, modality="MR", SeriesNumber=1, InstanceNumber=n) for n in (1, 2)]
    other = ds(
        study=b,
        series=us,
        patient_id="PID-002",
        patient_name="Müller^Jörg",
        modality="US",
        StudyDate="20230615",
        StudyTime="235900",
        AccessionNumber="ACC-2",
    )
    other.SpecificCharacterSet = "ISO_IR 100"
    await store(client, *items, other)
    return {"a": a, "b": b, "ct": ct, "mr": mr, "us": us, "sops": [i.SOPInstanceUID for i in items]}


async def test_all_routes_and_levels(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    a, ct = corpus["a"], corpus["ct"]
    studies = await search(client, "/v2/studies")
    assert sorted(values(studies, STUDY_UID)) == sorted([a, corpus["b"]])
    study_a = next(s for s in studies if s[STUDY_UID]["Value"][0] == a)
    assert study_a["00201206"] == {"vr": "IS", "Value": [2]}
    assert study_a["00201208"] == {"vr": "IS", "Value": [4]}
    assert study_a["00080061"]["Value"] == ["CT", "MR"]
    assert study_a["00081190"]["Value"][0].endswith(f"/v2/studies/{a}")
    assert study_a["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    for tag in ("00080020", "00080030", "00080050", "00100020", "00100040", "00200010", "00081030"):
        assert tag in study_a, tag
    assert list(study_a) == sorted(study_a)

    assert len(await search(client, "/v2/series")) == 3
    assert len(await search(client, "/v2/instances")) == 5
    series = await search(client, f"/v2/studies/{a}/series")
    assert values(series, SERIES_UID) == [corpus["mr"], ct]  # SeriesNumber order within a study
    assert series[0]["00201209"]["Value"] == [2]
    assert series[0]["00100020"]["Value"] == ["PID-001"]  # study attributes on series results
    assert series[0]["00081190"]["Value"][0].endswith(f"/studies/{a}/series/{corpus['mr']}")
    assert len(await search(client, f"/v2/studies/{a}/instances")) == 4
    instances = await search(client, f"/v2/studies/{a}/series/{ct}/instances")
    assert values(instances, "00200013") == [1, 2]  # InstanceNumber order
    first = instances[0]
    assert first["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
    assert first["00280010"]["Value"] == [16]
    assert first["00080060"]["Value"] == ["CT"]  # series attributes on instance results
    assert first["00100010"]["Value"][0]["Alphabetic"] == "Doe^Jane"
    assert first["00081190"]["Value"][0].endswith(f"/series/{ct}/instances/{first[SOP_UID]['Value'][0]}")
    assert await search(client, f"/v2/studies/{new_uid()}/series") == []


async def test_partitions_scope_search(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    study = new_uid()
    await store(client, ds(study=study, patient_id="PID-001"), path="/v2/partitions/p1/studies")
    assert values(await search(client, "/v2/partitions/p1/studies?PatientID=PID-001"), STUDY_UID) == [study]
    assert values(await search(client, "/v2/studies?PatientID=PID-001"), STUDY_UID) == [corpus["a"]]
    assert len(await search(client, f"/v2/partitions/p1/studies/{study}/instances")) == 1
    r = await search(client, "/v2/partitions/nope/studies", status=404)
    assert r.json()["code"] == "PartitionNotFound"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("PatientID=PID-001", {"a"}),
        ("00100020=PID-002", {"b"}),
        ("PatientID=", {"a", "b"}),
        ("PatientID=*", {"a", "b"}),
        ("PatientID=*001", {"a"}),
        ("PatientID=%2A00%3F", {"a", "b"}),
        ("PatientID=PID-00?", {"a", "b"}),
        ("PatientID=pid-001", set()),  # LO is case-sensitive
        ("PatientName=Doe^Jane", {"a"}),
        ("PatientName=doe^jane", {"a"}),  # PN: case-insensitive
        ("PatientName=Doe*", {"a"}),
        ("PatientName=*jan?", {"a"}),
        ("PatientName=Doe", set()),  # whole value, not substring
        ("PatientName=muller^jorg", {"b"}),  # accent-insensitive
        ("PatientName=jan&fuzzymatching=true", {"a"}),
        ("PatientName=JÖR&fuzzymatching=true", {"b"}),
        ("PatientName=mull&fuzzymatching=true", {"b"}),
        ("PatientName=ane&fuzzymatching=true", set()),  # prefix of a component only
        ("StudyDate=20240131", {"a"}),
        ("StudyDate=20240101-20241231", {"a"}),
        ("StudyDate=20240101-", {"a"}),
        ("StudyDate=-20231231", {"b"}),
        ("StudyTime=10-11", {"a"}),
        ("StudyTime=2359", {"b"}),
        ("StudyDate=20230615-20240130&StudyTime=2300-", {"b"}),  # combined: from 2023-06-15 23:00
        ("StudyDate=20230616-20240131&StudyTime=1000-1100", {"a"}),  # combined: until 2024-01-31 11:00
        ("StudyDate=20230614-20240130&StudyTime=1000-1100", {"b"}),  # combined, b is in the range
        ("AccessionNumber=ACC-2", {"b"}),
        ("StudyID=S1", {"a"}),
        ("PatientSex=F", {"a"}),
        ("StudyDescription=CT*", {"a"}),
        ("ModalitiesInStudy=MR", {"a"}),
        ("ModalitiesInStudy=US%5CMR", {"a", "b"}),
        ("Modality=US", {"b"}),  # OHIF sends Modality to /studies
        ("BodyPartExamined=CHEST", {"a"}),  # not indexed: matched in stored metadata
        ("0018,0015=CHEST".replace(",", ""), {"a"}),
        ("NumberOfStudyRelatedSeries=2", {"a"}),
        ("SeriesNumber=2", {"a"}),  # lower-level attribute: studies having such a series
        ("fuzzymatching=false&PatientName=JANE", set()),
    ],
)
async def test_study_matching(
    client: httpx.AsyncClient, corpus: dict[str, Any], query: str, expected: set[str]
) -> None:
    found = set(values(await search(client, f"/v2/studies?{query}"), STUDY_UID))
    assert found == {corpus[k] for k in expected}


async def test_uid_lists(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    a, b = corpus["a"], corpus["b"]
    for sep in ("\\", ",", "%5C", "%2C"):
        joined = f"{a}{sep}{b}" if sep.startswith("%") else quote(f"{a}{sep}{b}", safe=",")
        found = values(await search(client, f"/v2/studies?StudyInstanceUID={joined}"), STUDY_UID)
        assert sorted(found) == sorted([a, b]), sep
    sops = corpus["sops"][:3]
    found = values(await search(client, f"/v2/instances?SOPInstanceUID={','.join(sops)}"), SOP_UID)
    assert sorted(found) == sorted(sops)
    found = values(await search(client, f"/v2/series?SeriesInstanceUID={corpus['ct']},{corpus['us']}"), SERIES_UID)
    assert sorted(found) == sorted([corpus["ct"], corpus["us"]])


async def test_series_and_instance_matching(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    assert values(await search(client, "/v2/series?Modality=CT"), SERIES_UID) == [corpus["ct"]]
    assert values(await search(client, "/v2/series?Modality=C*"), SERIES_UID) == [corpus["ct"]]
    assert values(await search(client, "/v2/series?PatientID=PID-002"), SERIES_UID) == [corpus["us"]]
    assert values(await search(client, "/v2/series?SeriesNumber=2"), SERIES_UID) == [corpus["ct"]]
    found = await search(client, f"/v2/studies/{corpus['a']}/instances?InstanceNumber=2&Modality=MR")
    assert len(found) == 1
    assert found[0]["00080060"]["Value"] == ["MR"]
    found = await search(client, "/v2/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.2&Rows=16")
    assert len(found) == 5
    assert await search(client, "/v2/instances?Rows=17") == []


async def test_sequence_path_matching(client: httpx.AsyncClient) -> None:
    item = Dataset()
    item.ScheduledProcedureStepID = "SPS-9"
    item.RequestedProcedureID = "RP-1"
    d = ds()
    d.RequestAttributesSequence = [item]
    await store(client, d, ds())
    for key in ("RequestAttributesSequence.ScheduledProcedureStepID", "00400275.00400009"):
        found = await search(client, f"/v2/series?{key}=SPS-9")
        assert values(found, SERIES_UID) == [d.SeriesInstanceUID]
        assert found[0]["00400275"]["Value"][0]["00400009"]["Value"] == ["SPS-9"]
    r = await search(client, "/v2/studies?PatientName.PatientID=x", status=400)
    assert "PatientName.PatientID" in r.json()["message"]


async def test_includefield_forms(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    ohif = await search(client, "/v2/studies?limit=101&offset=0&includefield=00081030,00080060&PatientID=*001*")
    assert ohif[0]["00081030"]["Value"] == ["CT chest"]
    assert ohif[0]["00080061"]["Value"] == ["CT", "MR"]
    r = await search(client, "/v2/series?Modality=CT&includefield=BodyPartExamined&includefield=00180050,StudyID")
    assert r[0]["00180015"]["Value"] == ["CHEST"]
    assert r[0]["00200010"]["Value"] == ["S1"]
    r = await search(client, "/v2/studies?PatientID=PID-001&includefield=PatientWeight")
    assert r[0]["00101030"] == {"vr": "DS"}  # requested but absent: present, empty
    full = await search(client, "/v2/studies?PatientID=PID-001&includefield=all")
    assert full[0]["00100020"]["Value"] == ["PID-001"]
    assert full[0]["00201208"]["Value"] == [4]
    assert SOP_UID not in full[0]
    assert "7FE00010" not in full[0]
    inst = await search(client, f"/v2/studies/{corpus['a']}/series/{corpus['ct']}/instances?includefield=all")
    assert "7FE00010" not in inst[0]
    assert inst[0]["00280100"]["Value"] == [16]
    assert inst[0]["00180015"]["Value"] == ["CHEST"]
    # universal matching returns the attribute
    r = await search(client, "/v2/studies?PatientID=PID-001&PatientBirthDate=")
    assert "00100030" in r[0]
    r = await search(client, "/v2/studies?includefield=NotAKeyword", status=400)
    assert "includefield" in r.json()["message"]


async def test_paging_is_stable_and_warns(client: httpx.AsyncClient) -> None:
    study = new_uid()
    series = new_uid()
    items = [ds(study=study, series=series, InstanceNumber=n % 3) for n in range(11)]
    await store(client, *items)
    seen: list[str] = []
    for offset in range(0, 12, 4):
        r = await client.get(f"/v2/studies/{study}/series/{series}/instances?limit=4&offset={offset}")
        assert r.status_code == 200
        page = values(r.json(), SOP_UID)
        seen += page
        if offset < 8:
            assert r.headers["Warning"].startswith("299 ")
        else:
            assert "Warning" not in r.headers
    assert sorted(seen) == sorted(i.SOPInstanceUID for i in items)
    assert len(set(seen)) == 11
    r = await client.get(f"/v2/studies/{study}/instances?limit=4&offset=100")
    assert r.status_code == 200
    assert r.json() == []
    r = await client.get("/v2/instances?limit=5000")
    assert r.status_code == 200
    assert "limit" in r.headers["Warning"]


async def test_orderby(client: httpx.AsyncClient) -> None:
    dates = ["20200101", "20220101", "20210101"]
    studies = [ds(StudyDate=d, patient_name=f"P{i}^X") for i, d in enumerate(dates)]
    await store(client, *studies)
    found = await search(client, "/v2/studies?orderby=-StudyDate")
    assert values(found, "00080020") == sorted(dates, reverse=True)
    found = await search(client, "/v2/studies?orderby=StudyDate&limit=2&offset=1")
    assert values(found, "00080020") == sorted(dates)[1:]
    found = await search(client, "/v2/studies?orderby=-PatientName")
    assert [v["Alphabetic"] for v in values(found, "00100010")] == ["P2^X", "P1^X", "P0^X"]
    r = await search(client, "/v2/studies?orderby=BodyPartExamined", status=400)
    assert "orderby" in r.json()["message"]


async def test_character_sets(client: httpx.AsyncClient) -> None:
    latin = ds(patient_name="Gérard^Œdipe", patient_id="L1")
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName = "Gérard^Edipe"
    utf8 = ds(patient_name="Пушкин^Александр", patient_id="U1")
    utf8.SpecificCharacterSet = "ISO_IR 192"
    utf8.PatientName = "Пушкин^Александр"
    jis = ds(patient_id="J1")
    jis.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    jis.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    await store(client, latin, utf8, jis)
    cases = {
        "gerard^edipe": "L1",
        "G%C3%A9rard*": "L1",
        quote("Пушкин*"): "U1",
        quote("пушкин^александр"): "U1",
        quote("山田^太郎"): "J1",
        quote("山田*"): "J1",
        "yamada^tarou": "J1",
    }
    for name, pid in cases.items():
        found = await search(client, f"/v2/studies?PatientName={name}")
        assert values(found, "00100020") == [pid], name
    found = await search(client, f"/v2/studies?PatientName={quote('太郎')}&fuzzymatching=true")
    assert values(found, "00100020") == ["J1"]
    assert found[0]["00100010"]["Value"][0]["Ideographic"] == "山田^太郎"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("StudyDate=2024", "StudyDate"),
        ("StudyDate=20240230", "StudyDate"),
        ("StudyDate=-", "StudyDate"),
        ("StudyDate=2024*", "StudyDate"),
        ("StudyTime=25", "StudyTime"),
        ("StudyInstanceUID=1.2.abc", "StudyInstanceUID"),
        ("StudyInstanceUID=1.02", "StudyInstanceUID"),
        ("NumberOfStudyRelatedSeries=two", "NumberOfStudyRelatedSeries"),
        ("PatientId=PID-001", "PatientId"),  # a typo must not widen the search
        ("foo=bar", "foo"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("fuzzymatching=maybe", "fuzzymatching"),
        ("PixelData=x", "PixelData"),
        ("PatientID=a&PatientID=b", "PatientID"),
        ("AccessionNumber=" + "x" * 17, "AccessionNumber"),
        ("ReferencedSeriesSequence=x", "ReferencedSeriesSequence"),
    ],
)
async def test_errors_name_the_parameter(client: httpx.AsyncClient, query: str, parameter: str) -> None:
    r = await client.get(f"/v2/studies?{query}")
    assert r.status_code == 400, (query, r.text)
    assert f"'{parameter}'" in r.json()["message"]


async def test_no_query_string_causes_a_server_error(client: httpx.AsyncClient, corpus: dict[str, Any]) -> None:
    rng = random.Random(4)
    alphabet = string.printable + "é山\x00%*?\\-,^=.&"
    keys = ["PatientName", "PatientID", "StudyDate", "StudyTime", "StudyInstanceUID", "Modality", "limit", "offset",
            "includefield", "orderby", "fuzzymatching", "00100010", "BodyPartExamined", "SeriesNumber", "x"]  # fmt: skip
    for level in ("studies", "series", "instances"):
        for _ in range(40):
            parts = []
            for _ in range(rng.randint(1, 3)):
                value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
                parts.append(f"{rng.choice(keys)}={quote(value)}")
            r = await client.get(f"/v2/{level}?{'&'.join(parts)}")
            assert r.status_code in (200, 400), (parts, r.status_code, r.text)


async def test_azure_profile(azure_client: httpx.AsyncClient) -> None:
    d = ds(patient_id="AZ-1", StudyDescription="Head", ManufacturerModelName="Scanner")
    await store(azure_client, d)
    found = await search(azure_client, "/v2/studies?PatientID=AZ-1")
    assert set(found[0]) == {"00080020", "00080050", "00081030", "00080090", "00100010", "00100020", "00100030",
                             "0020000D"}  # fmt: skip
    full = await search(azure_client, "/v2/studies?PatientID=AZ-1&includefield=all")
    assert "00201208" in full[0]
    assert "00100040" in full[0]
    series = await search(azure_client, "/v2/series?ManufacturerModelName=Scanner")
    assert "00081090" in series[0]
    assert "00100020" in series[0]
    r = await azure_client.get("/v2/studies?PatientID=nobody")
    assert r.status_code == 204
    for query in ("limit=201", "SOPInstanceUID=1.2.3", "BodyPartExamined=HEAD", "PatientSex=F", "foo=1"):
        r = await azure_client.get(f"/v2/studies?{query}")
        assert r.status_code == 400, query
    assert (await azure_client.get("/v2/instances?SOPInstanceUID=1.2.3&limit=200")).status_code == 204
