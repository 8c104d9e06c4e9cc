"""PHI canary: a real service process with authentication on stores instances whose patient name and
ID are a canary, serves the usual traffic with the canary in query strings and paths, plus requests
that make it log warnings and errors, and the application log holds the canary (and the UIDs) zero
times. The audit trail (a separate file here, DICOM_AUDIT_LOG) holds UIDs, never the canary."""

from __future__ import annotations

import base64
import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.factories import make_dataset, multipart, to_bytes
from tests.helpers.entra import AUDIENCE, ISSUER, TENANT, FakeEntra, fake_entra, forged_tokens
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CANARY_NAME = "Zebulonqx^Canarywick"
CANARY_ID = "CNRY7731904"
CANARY_PARTS = ("Zebulonqx", "Canarywick", CANARY_ID)
JSON = {"Accept": "application/dicom+json"}


@pytest.fixture
def entra() -> Iterator[FakeEntra]:
    with fake_entra() as e:
        yield e


@pytest.fixture
def service(
    database_url: str, azurite: str, container: str, tmp_path: Path, entra: FakeEntra
) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {
            "DICOM_DATABASE_URL": database_url,
            "DICOM_STORAGE_CONNECTION_STRING": azurite,
            "DICOM_STORAGE_ACCOUNT_URL": "",
            "DICOM_STORAGE_CONTAINER": container,
            "DICOM_STORAGE_CREATE_CONTAINER": "true",
            "DICOM_LOG_LEVEL": "DEBUG",
            "DICOM_AUTH_ENABLED": "true",
            "DICOM_AUTH_TENANT_ID": TENANT,
            "DICOM_AUTH_AUDIENCE": AUDIENCE,
            "DICOM_AUTH_ISSUER": ISSUER,
            "DICOM_AUTH_JWKS_URL": entra.jwks_url,
            "DICOM_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            "DICOM_LIMIT_QUERY_BYTES": "2048",
        },
        log_path=tmp_path / "service.log",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def traffic(service: ServiceProcess, entra: FakeEntra) -> list[str]:
    """The suite's kinds of requests, with the canary wherever a client could put it; returns the UIDs."""
    owner = {"Authorization": f"Bearer {entra.mint()}"}
    datasets = [make_dataset(patient_name=CANARY_NAME, patient_id=CANARY_ID) for _ in range(3)]
    study = datasets[0].StudyInstanceUID
    datasets[1].StudyInstanceUID = study
    uids = [u for ds in datasets for u in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)]
    files = [to_bytes(ds) for ds in datasets]
    with httpx.Client(base_url=service.base_url, headers=owner, timeout=30) as c:

        def stow(parts: list[bytes], path: str = "/v2/studies", method: str = "POST") -> httpx.Response:
            body, content_type = multipart(parts)
            return c.request(method, path, content=body, headers={"Content-Type": content_type, **JSON})

        assert stow(files[:2]).status_code == 200
        single = c.post("/v2/studies", content=files[2], headers={"Content-Type": "application/dicom", **JSON})
        assert single.status_code == 200, single.text
        stow(files[:1])  # stored again: identical restore (200) or conflict (409)
        assert stow(files[:1], method="PUT").status_code == 200
        # instances the service refuses: no series UID, a canary as UID, truncated, garbage
        no_series = make_dataset(patient_name=CANARY_NAME, patient_id=CANARY_ID)
        del no_series.SeriesInstanceUID
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid UID we make on purpose
            bad_uid = to_bytes(make_dataset(patient_name=CANARY_NAME, patient_id=CANARY_ID, study=CANARY_ID + "^x"))
        broken = stow([to_bytes(no_series), bad_uid, files[0][: len(files[0]) // 2], CANARY_NAME.encode()])
        assert broken.status_code in (400, 409), broken.text
        assert stow([files[0]], path=f"/v2/studies/{CANARY_ID}").status_code in (400, 409)
        malformed = c.post(
            "/v2/studies",
            content=b"--b\r\nContent-Type: application/dicom\r\n" + CANARY_NAME.encode() * 20,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b', **JSON},
        )
        assert malformed.status_code == 400
        unsupported = c.post("/v2/studies", content=CANARY_ID, headers={"Content-Type": f"text/{CANARY_ID}"})
        assert unsupported.status_code in (400, 415)

        ds = datasets[0]
        series, instance = ds.SeriesInstanceUID, ds.SOPInstanceUID
        for path in (
            f"/v2/studies/{study}",
            f"/v2/studies/{study}/metadata",
            f"/v2/studies/{study}/series/{series}",
            f"/v2/studies/{study}/series/{series}/metadata",
            f"/v2/studies/{study}/series/{series}/instances/{instance}",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/metadata",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/frames/1",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/bulkdata/7FE00010",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/rendered",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/frames/{CANARY_ID}/rendered",
            f"/v2/studies/{study}/thumbnail",
            f"/v2/studies/{study}/series/{series}/instances/{instance}/rendered?window={CANARY_ID}",
            f"/v2/studies?PatientName={quote(CANARY_NAME)}",
            f"/v2/studies?PatientID={CANARY_ID}&includefield=all",
            "/v2/studies?PatientName=Zebulonqx*&fuzzymatching=true",
            f"/v2/series?PatientID={CANARY_ID}&StudyInstanceUID={study}",
            f"/v2/instances?PatientID={CANARY_ID}&SOPInstanceUID={instance}",
            f"/v2/studies?PatientID={CANARY_ID}&limit={CANARY_ID}",
            f"/v2/studies?00100020={CANARY_ID}&offset=-1",
            f"/v2/studies?{CANARY_ID}={CANARY_ID}",
            f"/v2/studies/{CANARY_ID}/metadata",
            f"/v2/studies/{study}/series/{CANARY_ID}",
            f"/v2/partitions/{CANARY_ID}/studies?PatientID={CANARY_ID}",
            f"/v2/{CANARY_NAME}",
            f"/{CANARY_ID}?name={CANARY_NAME}",
            f"/v2/studies?PatientID={CANARY_ID}&pad={'x' * 3000}",
            "/v2/changefeed?includeMetadata=true",
            f"/v2/changefeed?startTime={CANARY_ID}",
        ):
            c.get(path, headers={"Accept": "*/*"})
        c.get(f"/v2/studies/{study}", headers={"Accept": f'multipart/related; type="{CANARY_ID}"'})
        c.delete(f"/v2/studies/{study}/series/{datasets[2].SeriesInstanceUID}")
        c.delete(f"/v2/studies/{CANARY_ID}")
    with httpx.Client(base_url=service.base_url, timeout=30) as anonymous:
        for token in [*forged_tokens(entra).values(), CANARY_ID]:
            anonymous.get(f"/v2/studies?PatientID={CANARY_ID}", headers={"Authorization": f"Bearer {token}"})
        reader = {"Authorization": f"Bearer {entra.mint(roles=['DICOM Data Reader'])}"}
        anonymous.delete(f"/v2/studies/{study}", headers=reader)
        anonymous.get(f"/v2/studies/{study}?PatientName={CANARY_NAME}")
    raw_requests(service.port)
    return uids


def raw_requests(port: int) -> None:
    """Requests no client library would send: the server's own error paths (uvicorn, httptools)."""
    for raw in (
        f"GET /v2/studies?PatientID={CANARY_ID} HTTP/1.1\r\nHost: x\r\nContent-Length: nope-{CANARY_ID}\r\n\r\n",
        f"GET /v2/{CANARY_ID} HTTP/9.9\r\nHost: x\r\n\r\n",
        f"{CANARY_ID} /v2/studies HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /v2/studies?x={CANARY_ID}\x00 HTTP/1.1\r\nHost: x\r\n{CANARY_NAME}\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw.encode("latin-1"))
            try:
                sock.recv(65536)
            except OSError:
                pass


def test_canary_never_in_the_application_log(service: ServiceProcess, entra: FakeEntra, tmp_path: Path) -> None:
    uids = traffic(service, entra)
    service.stop()  # flushes the log
    log = (tmp_path / "service.log").read_text(errors="replace")
    assert '"logger":"dicomlake.access"' in log  # the log is there and has requests in it
    assert '"level":"WARNING"' in log or '"level":"ERROR"' in log  # and the error paths were taken
    leaks = {needle: log.count(needle) for needle in (*CANARY_PARTS, *uids)}
    leaks |= {f"base64:{n}": log.count(base64.b64encode(n.encode()).decode()) for n in CANARY_PARTS}
    leaked = {needle: count for needle, count in leaks.items() if count}
    assert not leaked, "patient data in the application log: " + json.dumps(
        [line for line in log.splitlines() if any(n in line for n in leaked)][:10], indent=1
    )
    audit = (tmp_path / "audit.jsonl").read_text()
    assert uids[0] in audit  # the audit trail names the study
    # partition names are recorded as given (operator-chosen labels); nothing else may carry the canary
    records = [json.loads(line) for line in audit.splitlines()]
    assert any(r["partition"] == CANARY_ID for r in records)
    others = json.dumps([{k: v for k, v in r.items() if k != "partition"} for r in records])
    assert not [part for part in CANARY_PARTS if part in others]
    assert '"audit"' not in log  # and its records are not in the application log
