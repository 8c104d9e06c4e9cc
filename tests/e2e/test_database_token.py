"""PostgreSQL with Microsoft Entra tokens: configured with host and user only (no URL, no password), the
service fetches a token for the Azure OSS RDBMS scope from the managed identity for each connection.

The local PostgreSQL trusts loopback connections, so it cannot judge the token itself; what this proves
is the wiring Azure relies on: settings -> asyncpg's password callable -> DefaultAzureCredential ->
the identity endpoint, with the user-assigned identity's client id."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.identity import IdentityEndpoint
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
SCOPE_RESOURCE = "https://ossrdbms-aad.database.windows.net"


async def test_database_connections_use_entra_tokens(
    database_url: str, azurite: str, container: str, tmp_path: Path
) -> None:
    url = urlsplit(database_url)
    with IdentityEndpoint(lifetime=3600) as identity:
        service = ServiceProcess(
            {
                "DICOM_DATABASE_URL": "",
                "DICOM_DATABASE_HOST": url.hostname or "",
                "DICOM_DATABASE_PORT": str(url.port),
                "DICOM_DATABASE_NAME": url.path.lstrip("/"),
                "DICOM_DATABASE_USER": url.username or "",
                "DICOM_DATABASE_SSLMODE": "disable",
                "DICOM_STORAGE_CONNECTION_STRING": azurite,
                "DICOM_STORAGE_CONTAINER": container,
                "DICOM_STORAGE_CREATE_CONTAINER": "true",
                **identity.environ(),
            },
            log_path=tmp_path / "service.log",
        )
        service.start()
        try:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                check = (await client.get("/health/check")).json()
                assert check["overallStatus"] == "Healthy", check
                assert (await client.get("/v2/studies")).status_code == 200
        finally:
            service.stop()
    database_requests = [r for r in identity.requests if r.get("resource") == SCOPE_RESOURCE]
    assert database_requests, identity.requests
    assert all(r["client_id"] == identity.client_id for r in database_requests)
    assert all(r["header"] == identity.secret for r in database_requests)
