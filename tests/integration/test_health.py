from __future__ import annotations

import asyncio
import time

import pytest

from dicomlake.app import create_app
from dicomlake.storage.blob_store import AzureBlobStore
from tests.conftest import make_settings
from tests.helpers.asgi import running_app

pytestmark = pytest.mark.integration
PREFIX = "AHDS/workspace/dicom/dicom/healthCheck/"


async def _wait_for(client_get: object, predicate: object, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        response = await client_get()  # type: ignore[operator]
        if predicate(response) or time.monotonic() > deadline:  # type: ignore[operator]
            return response
        await asyncio.sleep(0.2)


async def test_ready_and_health_file(database_url: str, azurite: str, container: str) -> None:
    settings = make_settings(database_url, azurite, container, probe_interval=1)
    async with running_app(create_app(settings)) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert (await client.get("/health/live")).status_code == 200
        check = (await client.get("/health/check")).json()
        assert check["overallStatus"] == "Healthy"
        assert {d["name"] for d in check["details"]} == {"database", "storage", "deletionQueue"}
        async with AzureBlobStore.from_connection_string(azurite, container) as store:
            files = [b async for b in store.list_blobs(PREFIX)]
            assert len(files) == 1
            first = files[0].name
            await asyncio.sleep(2.5)
            files = [b async for b in store.list_blobs(PREFIX)]
            # the previous file is deleted as the next one is written: one file, a newer one
            assert len(files) == 1
            assert files[0].name != first
            assert (time.time() - files[0].last_modified.timestamp()) < 5  # type: ignore[union-attr]
    # clean shutdown removes this replica's probe file
    async with AzureBlobStore.from_connection_string(azurite, container) as store:
        assert [b async for b in store.list_blobs(PREFIX)] == []


async def test_container_loss_is_named_and_recovers(database_url: str, azurite: str, container: str) -> None:
    settings = make_settings(database_url, azurite, container, probe_interval=1)
    async with running_app(create_app(settings)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        async with AzureBlobStore.from_connection_string(azurite, container) as store:
            await store.delete_container()
            response = await _wait_for(lambda: client.get("/health/check"), lambda r: r.status_code == 503)
            body = response.json()  # type: ignore[attr-defined]
            assert body["overallStatus"] == "Degraded"  # storage answers but refuses: not a crash
            storage = next(d for d in body["details"] if d["name"] == "storage")
            assert container in storage["description"]
            assert "does not exist" in storage["description"]
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/health/ready")).status_code == 503
            # Azurite refuses to recreate a container for a short while after deleting it.
            deadline = time.monotonic() + 30
            while True:
                try:
                    await store.create_container()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            response = await _wait_for(lambda: client.get("/health/check"), lambda r: r.status_code == 200)
            assert response.json()["overallStatus"] == "Healthy"  # type: ignore[attr-defined]


async def test_wrong_key_is_explained(database_url: str, azurite: str, container: str) -> None:
    bad = azurite.replace("AccountKey=Eby8", "AccountKey=AAAA")
    settings = make_settings(database_url, bad, container, probe_interval=1)
    async with running_app(create_app(settings)) as client:
        response = await client.get("/health/check")
        assert response.status_code == 503
        assert response.json()["overallStatus"] == "Degraded"
        storage = next(d for d in response.json()["details"] if d["name"] == "storage")
        assert storage["status"] == "Degraded"
        assert "refused access (AuthorizationFailure)" in storage["description"]
        assert "Storage Blob Data Contributor" in storage["description"]
        assert container in storage["description"]
        assert (await client.get("/health/live")).status_code == 200


async def test_request_id_and_phi_free_access_log(
    database_url: str, azurite: str, container: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, azurite, container)
    async with running_app(create_app(settings)) as client:
        caplog.set_level("INFO", logger="dicomlake.access")
        response = await client.get("/health/live?PatientName=CANARY^SECRET", headers={"x-request-id": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
        generated = await client.get("/health/live")
        assert len(generated.headers["x-request-id"]) == 32
    access = [r for r in caplog.records if r.name == "dicomlake.access"]
    assert access
    assert all("CANARY" not in r.getMessage() and "CANARY" not in str(vars(r)) for r in access)
    assert getattr(access[0], "route", None) == "/health/live"
