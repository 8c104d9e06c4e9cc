"""The managed-identity path, as in Azure: account URL only (no key), tokens from the Container Apps
identity endpoint (a local stand-in), Azurite in OAuth mode over HTTPS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from dicomlake.devstack.azurite import ACCOUNT, ACCOUNT_KEY, LocalAzurite
from dicomlake.storage.blob_store import AzureBlobStore
from tests.helpers.identity import IdentityEndpoint
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
TOKEN_LIFETIME = 8


async def test_service_runs_on_managed_identity(
    tls_azurite: tuple[LocalAzurite, Path], database_url: str, tmp_path: Path
) -> None:
    azurite, ca_path = tls_azurite
    with IdentityEndpoint(lifetime=TOKEN_LIFETIME) as identity:
        service = ServiceProcess(
            {
                "DICOM_STORAGE_ACCOUNT_URL": azurite.account_url,
                "DICOM_STORAGE_CONNECTION_STRING": "",
                "DICOM_STORAGE_CONTAINER": "lake",
                "DICOM_STORAGE_CREATE_CONTAINER": "true",
                "DICOM_DATABASE_URL": database_url,
                "DICOM_HEALTH_PROBE_INTERVAL_SECONDS": "1",
                "SSL_CERT_FILE": str(ca_path),
                **identity.environ(),
            },
            log_path=tmp_path / "service.log",
        )
        service.start()
        client = httpx.AsyncClient(base_url=service.base_url, timeout=10)
        try:
            check = (await client.get("/health/check")).json()
            assert check["overallStatus"] == "Healthy", check
            storage_requests = [r for r in identity.requests if r.get("resource") == "https://storage.azure.com"]
            assert storage_requests, identity.requests
            assert all(r["client_id"] == identity.client_id for r in storage_requests)
            assert all(r["header"] == identity.secret for r in storage_requests)

            # What the service wrote is really in the account, under the data contract's prefix.
            conn = (
                f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={azurite.account_url};"
            )
            async with AzureBlobStore.from_connection_string(conn, "lake", connection_verify=str(ca_path)) as store:
                files = [b.name async for b in store.list_blobs("AHDS/workspace/dicom/dicom/healthCheck/")]
            assert len(files) == 1

            # Outlive the first token: the credential must fetch new ones, and the probe keep working.
            issued_before = len(storage_requests)
            await asyncio.sleep(TOKEN_LIFETIME + 3)
            check = (await client.get("/health/check")).json()
            assert check["overallStatus"] == "Healthy", check
            storage = next(d for d in check["details"] if d["name"] == "storage")
            assert "Wrote, read and deleted" in storage["description"]
            storage_requests = [r for r in identity.requests if r.get("resource") == "https://storage.azure.com"]
            assert len(storage_requests) > issued_before
        finally:
            await client.aclose()
            service.stop()
        assert "Traceback" not in service.log()
