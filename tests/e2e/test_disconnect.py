"""A client that disconnects mid-upload leaves no orphan blob and no pending row."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import httpx
import pytest

from dicomlake.jobs.janitor import Janitor
from dicomlake.storage.blob_store import AzureBlobStore
from tests.factories import instance_bytes, multipart
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _send_partial(port: int, body: bytes, content_type: str, cut: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        head = (
            f"POST /v2/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        s.sendall(head + body[:cut])


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
async def test_disconnect_mid_upload(
    service: ServiceProcess, database_url: str, blob_store: AzureBlobStore, fraction: float
) -> None:
    parts = [instance_bytes(rows=512, columns=512) for _ in range(4)]  # ~0.5 MB each
    body, content_type = multipart(parts)
    await asyncio.to_thread(_send_partial, service.port, body, content_type, int(len(body) * fraction))
    await asyncio.sleep(2)  # let the server notice and clean up
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await Janitor(pool, blob_store).run_once()
        assert await pool.fetchval("SELECT count(*) FROM instances WHERE status = 1") == 0
        committed = {r["blob_name"] for r in await pool.fetch("SELECT blob_name FROM instances WHERE status = 2")}
    finally:
        await pool.close()
    blobs = {b.name async for b in blob_store.list_blobs("AHDS/workspace/dicom/dicom/Microsoft.Default/")}
    assert blobs == committed  # no orphan, no missing file
    assert len(committed) < len(parts)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{service.base_url}/health/ready")).status_code == 200
