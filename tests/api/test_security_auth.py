"""Authentication and authorization in the app: every route against the role matrix, every forged
token class refused with 401 + WWW-Authenticate, 503 without signing keys, deny by default, audit
records, CORS."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from dicomlake.app import create_app
from dicomlake.auth.roles import Action, RoleMap
from dicomlake.config import CorsSettings, Settings
from dicomlake.web.auth import AuditMiddleware, AuthMiddleware, open_security
from dicomlake.web.policy import action_for
from dicomlake.web.routes import build_routes
from tests.factories import instance_bytes, make_dataset, multipart, new_uid, to_bytes
from tests.helpers.asgi import running_app
from tests.helpers.entra import FakeEntra, fake_entra, forged_tokens

pytestmark = pytest.mark.integration

ROLE_MAP = (("Uploader", ("write",)), ("Cleaner", ("delete",)), ("Curator", ("admin",)))
CALLERS: dict[str, list[str]] = {
    "reader": ["DICOM Data Reader"],
    "owner": ["DICOM.Data.Owner"],
    "uploader": ["Uploader"],
    "cleaner": ["Cleaner"],
    "curator": ["Curator"],
    "no roles": [],
}


@pytest.fixture
def entra() -> Iterator[FakeEntra]:
    with fake_entra() as e:
        yield e


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def secure_settings(settings: Settings, entra: FakeEntra, audit_path: Path) -> Settings:
    return dataclasses.replace(entra.settings(settings, role_map=ROLE_MAP), audit_log=str(audit_path))


@pytest.fixture
async def secure(secure_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(secure_settings)) as c:
        yield c


def audit_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_text(path: Path) -> str:
    return path.read_text()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def concrete(template: str, uids: dict[str, str]) -> str:
    values = {
        "{partition}": "Microsoft.Default",
        "{study}": uids["study"],
        "{series}": uids["series"],
        "{instance}": uids["instance"],
        "{path:path}": "7FE00010",
        "{frames}": "1",
        "{tag}": "00101010",
        "{id}": "00000000-0000-4000-8000-000000000000",
    }
    for key, value in values.items():
        template = template.replace(key, value)
    assert "{" not in template, f"no example value for a parameter of {template}: add it to concrete()"
    return template


def every_route() -> list[tuple[str, str]]:
    return [
        (method, route.path)
        for route in build_routes()
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
    ]


async def test_role_matrix_over_every_route(secure: httpx.AsyncClient, entra: FakeEntra) -> None:
    ds = make_dataset()
    uids = {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "instance": ds.SOPInstanceUID}
    owner = bearer(entra.mint(roles=CALLERS["owner"]))
    body, content_type = multipart([to_bytes(ds)])
    stored = await secure.post("/v2/studies", content=body, headers={"Content-Type": content_type, **owner})
    assert stored.status_code == 200, stored.text
    roles = RoleMap(dict(ROLE_MAP))
    tokens = {name: bearer(entra.mint(roles=r)) for name, r in CALLERS.items()}
    checked = 0
    for method, template in every_route():
        action = action_for(method, template)
        assert action is not None, f"{method} {template} has no declared action"
        path = concrete(template, uids)
        anonymous = await secure.request(method, path)
        if action is Action.PUBLIC:
            assert anonymous.status_code not in (401, 403), f"{method} {template}"
            continue
        assert anonymous.status_code == 401, f"{method} {template}: {anonymous.status_code}"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        for caller, headers in tokens.items():
            if action is Action.DELETE and caller in ("owner", "cleaner"):
                continue  # deleting the example instance would change what the other routes answer
            extra = {"Content-Type": "application/dicom"} if method in ("POST", "PUT") else {}
            response = await secure.request(method, path, headers={**headers, **extra}, content=b"")
            allowed = roles.allows(CALLERS[caller], action)
            where = f"{method} {template} as {caller}: {response.status_code} {response.text[:200]}"
            if allowed:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
                if method != "HEAD":
                    assert response.json()["code"] == "Forbidden", where
            checked += 1
    assert checked > 200
    # delete last, by the two callers allowed to
    for caller in ("cleaner", "owner"):
        gone = await secure.delete(f"/v2/studies/{uids['study']}", headers=tokens[caller])
        assert gone.status_code not in (401, 403), gone.text


@pytest.mark.parametrize(
    "name",
    [
        "expired",
        "not yet valid",
        "wrong audience",
        "wrong issuer",
        "wrong tenant",
        "HS256 with the public key as secret",
        "alg none",
        "unknown kid",
        "known kid, other key",
        "tampered payload",
        "no exp",
        "garbage",
    ],
)
async def test_forged_tokens_are_401(secure: httpx.AsyncClient, entra: FakeEntra, audit_path: Path, name: str) -> None:
    token = forged_tokens(entra)[name]
    response = await secure.get("/v2/studies", headers=bearer(token))
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="dicomlake", error="invalid_token"')
    record = audit_records(audit_path)[-1]
    assert record["outcome"] == "denied"
    assert record["authFailure"]
    assert record["caller"] is None
    assert token not in read_text(audit_path)


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer "])
async def test_missing_token_is_401(secure: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await secure.get("/v2/studies", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="dicomlake"')


async def test_valid_token_without_roles_is_403(secure: httpx.AsyncClient, entra: FakeEntra) -> None:
    response = await secure.get("/v2/studies", headers=bearer(entra.mint(roles=None)))
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"


async def test_unknown_route_needs_a_token_then_404(secure: httpx.AsyncClient, entra: FakeEntra) -> None:
    assert (await secure.get("/v2/nothing-here")).status_code == 401
    assert (await secure.get("/v2/nothing-here", headers=bearer(entra.mint()))).status_code == 404


async def test_health_stays_open(secure: httpx.AsyncClient) -> None:
    assert (await secure.get("/health/live")).status_code == 200
    assert (await secure.get("/health/ready")).status_code == 200


async def test_no_signing_keys_is_503_never_allow(settings: Settings, entra: FakeEntra) -> None:
    token = entra.mint()
    entra.available = False
    async with running_app(create_app(entra.settings(settings))) as client:
        response = await client.get("/v2/studies", headers=bearer(token))
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert (await client.get("/health/live")).status_code == 200
        entra.available = True
        # the cache retries a few seconds later; until then, still 503, never allowed
        response = await client.get("/v2/studies", headers=bearer(token))
        assert response.status_code in (200, 503)


async def test_route_without_declared_action_is_denied(settings: Settings, entra: FakeEntra) -> None:
    async def handler(_: Request) -> Response:
        return PlainTextResponse("should not be reached")

    routes = [Route("/v2/undeclared", handler, methods=["GET"]), Route("/v2/studies", handler, methods=["GET"])]
    router = Router(routes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_security(entra.settings(settings)) as security:
            yield {"security": security}

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AuditMiddleware, router=router), Middleware(AuthMiddleware, router=router)],
    )
    async with running_app(app) as client:
        owner = bearer(entra.mint())
        denied = await client.get("/v2/undeclared", headers=owner)
        assert denied.status_code == 403
        assert denied.json()["code"] == "ActionNotDeclared"
        assert (await client.get("/v2/studies", headers=owner)).text == "should not be reached"


async def test_audit_records_caller_action_and_uids_but_no_patient_data(
    secure: httpx.AsyncClient, entra: FakeEntra, audit_path: Path
) -> None:
    study = new_uid()
    token = entra.mint(oid="caller-oid", azp="viewer-app", roles=["DICOM Data Owner"])
    body, content_type = multipart([instance_bytes(study=study, patient_name="Canary^Audit", patient_id="AUD-77")])
    headers = {"Content-Type": content_type, "X-Request-Id": "req-audit-1", **bearer(token)}
    assert (await secure.post("/v2/studies", content=body, headers=headers)).status_code == 200
    assert (await secure.get(f"/v2/studies/{study}/metadata", headers=bearer(token))).status_code == 200
    assert (await secure.get("/v2/studies?PatientName=Canary*", headers=bearer(token))).status_code in (200, 204)
    assert (await secure.get(f"/v2/studies/{new_uid()}", headers=bearer(token))).status_code == 404
    records = audit_records(audit_path)
    store, metadata, search, missing = records[-4:]
    assert store["requestId"] == "req-audit-1"
    assert store["action"] == "write"
    assert store["storedStudyInstanceUids"] == [study]
    assert store["caller"] == {
        "oid": "caller-oid",
        "tid": entra.claims()["tid"],
        "appid": "viewer-app",
        "roles": ["DICOM Data Owner"],
        "idtyp": "app",
    }
    assert store["outcome"] == "success"
    assert store["partition"] == "Microsoft.Default"
    assert metadata["studyInstanceUid"] == study
    assert metadata["route"] == "/v2/studies/{study}/metadata"
    assert search["action"] == "read"
    assert missing["status"] == 404
    assert missing["outcome"] == "failure"
    assert missing["errorCode"]
    for record in records:
        assert set(record) >= {"time", "requestId", "action", "caller", "clientIp", "status", "durationMs"}
    text = read_text(audit_path)
    assert "Canary" not in text
    assert "AUD-77" not in text


async def test_audit_without_authentication_still_records(client: httpx.AsyncClient) -> None:
    # the default app (auth off) audits to stderr; it must still answer normally
    assert (await client.get("/v2/studies")).status_code in (200, 204)


async def test_cors_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"Origin": "https://viewer.example.org"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_with_authorization_before_auth(secure_settings: Settings, entra: FakeEntra) -> None:
    settings = dataclasses.replace(secure_settings, cors=CorsSettings(origins=("https://viewer.example.org",)))
    async with running_app(create_app(settings)) as client:
        preflight = await client.options(
            "/v2/studies",
            headers={
                "Origin": "https://viewer.example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, accept",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "https://viewer.example.org"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        ranged = await client.options(
            "/v2/studies/1.2.3/series/1.2.4/instances/1.2.5",
            headers={
                "Origin": "https://viewer.example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, range, if-range",
            },
        )
        assert ranged.status_code == 200, ranged.text  # byte-range requests from a browser viewer
        other = await client.options(
            "/v2/studies",
            headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "GET"},
        )
        assert other.status_code == 400
        actual = await client.get(
            "/v2/studies", headers={"Origin": "https://viewer.example.org", **bearer(entra.mint())}
        )
        assert actual.headers["access-control-allow-origin"] == "https://viewer.example.org"
        assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()
        assert "content-range" in actual.headers["access-control-expose-headers"].lower()
        denied = await client.get("/v2/studies", headers={"Origin": "https://viewer.example.org"})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://viewer.example.org"
