"""Storage stops reading in the middle of a large STOW (a frozen endpoint: the TCP connection stays up,
nothing is read, the sender's buffers fill). The SDK has no write timeout, so without the per-block
deadline of ``storage/blob_store.py`` the request hung; now it answers 503 with Retry-After, the
reservation is discarded, and the same process stores again once storage reads again.

The proxy in front of storage has a small fixed receive buffer and announces an Ethernet-sized segment
(1460 bytes), so a frozen proxy stops the sender after a few hundred KiB as a real network would; with
loopback's 64 KiB segments the sender's buffers swallow a whole 4 MiB block, and the freeze then shows up
as the read timeout after the body was sent rather than as a stalled write."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from dicomlake.app import create_app
from dicomlake.storage import blob_store
from tests.conftest import make_settings
from tests.factories import instance_bytes, make_dataset, multipart, to_bytes
from tests.faults import invariants
from tests.faults.harness import DICOM_JSON, Stack, azurite_connection_string
from tests.faults.proxy import FaultProxy
from tests.helpers.asgi import running_app
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
RECEIVE_BUFFER = 64 * 1024
MiB = 1024 * 1024


def _large_instance() -> bytes:
    """About 24 MiB of native pixel data: six 4 MiB blocks, three staged at a time."""
    return to_bytes(make_dataset(rows=1024, columns=1024, frames=12))


@pytest.fixture
def slow_reader_proxy() -> Iterator[Callable[[int], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def start(upstream_port: int) -> FaultProxy:
        proxy = FaultProxy(upstream_port, receive_buffer=RECEIVE_BUFFER, mss=1460).start()
        proxies.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.stop()


async def _pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM instances WHERE status = 1"))
    finally:
        await conn.close()


@pytest.mark.faults
async def test_storage_freezes_mid_upload(
    stack: Stack, slow_reader_proxy: Callable[[int], FaultProxy], figures: Callable[..., None]
) -> None:
    proxy = slow_reader_proxy(stack.servers.azurite.port)
    env = stack.env() | {"DICOM_STORAGE_CONNECTION_STRING": azurite_connection_string(proxy.port)}
    service = ServiceProcess(env, log_path=stack.tmp / "service-0.log")
    stack.services.append(service)
    service.start()
    base = service.base_url
    async with httpx.AsyncClient(timeout=300) as client:
        r = await stack.stow(client, base, [instance_bytes()])
        assert r is not None
        assert r.status_code == 200

        proxy.freeze_after(1 * MiB)  # mid-upload, while the first three blocks are being sent
        started = time.monotonic()
        r = await stack.stow(client, base, [_large_instance()])
        failed_after = time.monotonic() - started
        assert r is not None, "the connection broke instead of an answer"
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after")
        assert "write deadline" in r.json()["message"]  # not a read timeout after the body was sent
        assert proxy.mode == "freeze"  # the fault really happened mid-upload
        assert await _pending(stack.direct_dsn) == 0  # the store discarded its own reservation

        proxy.set("pass")
        thawed = time.monotonic()
        r = await stack.stow(client, base, [_large_instance()])
        assert r is not None
        assert r.status_code == 200, r.text
        recovered_after = time.monotonic() - thawed
    report = await invariants.check(stack, base)
    assert report.lost == 0
    assert report.orphans_after_janitor == 0
    figures(
        scenario="storage frozen mid-upload (24 MiB STOW)",
        failed_after_seconds=round(failed_after, 1),
        recover_seconds=round(recovered_after, 1),
        **report.as_dict(),
    )


async def test_storage_freezes_mid_upload_smoke(
    database_url: str,
    azurite: str,
    container: str,
    slow_reader_proxy: Callable[[int], FaultProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same in-process, with a 2 s write deadline instead of 30 s (``make test``)."""
    monkeypatch.setattr(blob_store, "MIN_UPLOAD_DEADLINE_SECONDS", 2.0)
    monkeypatch.setattr(blob_store, "MIN_UPLOAD_BYTES_PER_SECOND", 1e12)
    endpoint = re.search(r"BlobEndpoint=([^;]+)", azurite)
    assert endpoint is not None
    port = urlsplit(endpoint[1]).port
    assert port is not None
    proxy = slow_reader_proxy(port)
    proxied = azurite.replace(f":{port}/", f":{proxy.port}/")
    async with running_app(create_app(make_settings(database_url, proxied, container))) as client:
        proxy.freeze_after(1 * MiB)
        body, content_type = multipart([_large_instance()])
        r = await client.post("/v2/studies", content=body, headers={"Content-Type": content_type, **DICOM_JSON})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after")
        assert r.json()["code"] == "StorageUnavailable"
        assert "write deadline" in r.json()["message"]
        assert proxy.mode == "freeze"
        assert await _pending(database_url) == 0

        proxy.set("pass")
        data = _large_instance()
        body, content_type = multipart([data])
        r = await client.post("/v2/studies", content=body, headers={"Content-Type": content_type, **DICOM_JSON})
        assert r.status_code == 200, r.text
        url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        got = await client.get(urlsplit(url).path, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert got.status_code == 200
        assert got.content[128:] == data[128:]
