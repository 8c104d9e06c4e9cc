"""Request limits: 414 query string, 431 headers, 413 body (declared and counted) and parts, 408 for
a slow-drip upload against a real server process."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dicomlake.app import create_app
from dicomlake.config import LimitSettings, Settings
from tests.factories import instance_bytes, multipart
from tests.helpers.asgi import running_app
from tests.helpers.server import ServiceProcess

pytestmark = pytest.mark.integration

LIMITS = LimitSettings(body_bytes=64 * 1024, part_bytes=48 * 1024, parts=3, header_bytes=4096, query_bytes=512)
JSON = {"Accept": "application/dicom+json"}


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(dataclasses.replace(settings, limits=LIMITS))) as c:
        yield c


async def test_long_query_string_is_414(limited: httpx.AsyncClient) -> None:
    assert (await limited.get("/v2/studies?" + "&".join(["limit=5"] * 60))).status_code != 414
    response = await limited.get("/v2/studies?" + "&".join(["limit=5"] * 100))
    assert response.status_code == 414
    assert response.json()["code"] == "UriTooLong"


async def test_large_headers_are_431(limited: httpx.AsyncClient) -> None:
    response = await limited.get("/v2/studies", headers={"X-Padding": "p" * 5000})
    assert response.status_code == 431
    assert (await limited.get("/health/live", headers={"X-Padding": "p" * 5000})).status_code == 431


async def test_declared_body_too_large_is_413_before_reading(limited: httpx.AsyncClient) -> None:
    body, content_type = multipart([b"\0" * (70 * 1024)])
    response = await limited.post("/v2/studies", content=body, headers={"Content-Type": content_type, **JSON})
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"


async def test_chunked_body_too_large_is_413_while_reading(limited: httpx.AsyncClient) -> None:
    body, content_type = multipart([instance_bytes(rows=128, columns=96) for _ in range(3)])
    assert len(body) > LIMITS.body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 8192):
            yield body[at : at + 8192]

    response = await limited.post("/v2/studies", content=chunks(), headers={"Content-Type": content_type, **JSON})
    assert response.status_code == 413


async def test_too_many_parts_is_413(limited: httpx.AsyncClient) -> None:
    ok, content_type = multipart([instance_bytes() for _ in range(3)])
    assert (
        await limited.post("/v2/studies", content=ok, headers={"Content-Type": content_type, **JSON})
    ).status_code == 200
    body, content_type = multipart([instance_bytes() for _ in range(4)])
    response = await limited.post("/v2/studies", content=body, headers={"Content-Type": content_type, **JSON})
    assert response.status_code == 413
    assert "parts" in response.json()["message"]


async def test_part_too_large_is_413(limited: httpx.AsyncClient) -> None:
    body, content_type = multipart([instance_bytes(rows=160, columns=160)])  # 50 KiB of pixels + header
    assert 48 * 1024 < len(body) < 64 * 1024
    response = await limited.post("/v2/studies", content=body, headers={"Content-Type": content_type, **JSON})
    assert response.status_code == 413


@pytest.fixture
def slow_service(database_url: str, azurite: str, container: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {
            "DICOM_DATABASE_URL": database_url,
            "DICOM_STORAGE_CONNECTION_STRING": azurite,
            "DICOM_STORAGE_ACCOUNT_URL": "",
            "DICOM_STORAGE_CONTAINER": container,
            "DICOM_STORAGE_CREATE_CONTAINER": "true",
            "DICOM_LIMIT_BODY_GRACE_SECONDS": "1",
            "DICOM_LIMIT_BODY_MIN_BYTES_PER_SECOND": "1000",
            "DICOM_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        },
        log_path=tmp_path / "service.log",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def slow_drip(port: int, *, total: int, step: int, pause: float, budget: float) -> bytes:
    """Send the headers, then ``step`` bytes every ``pause`` seconds; return what the server answers."""
    boundary = "drip"
    head = (
        f"POST /v2/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/dicom+json\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}\r\n'
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        sock.setblocking(False)
        answer = b""
        stop = time.monotonic() + budget
        while time.monotonic() < stop:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
            except BlockingIOError:
                pass
            try:
                sock.send(b"\0" * step)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            time.sleep(pause)
        return answer


def test_slow_drip_upload_is_cut_off_with_408(slow_service: ServiceProcess, tmp_path: Path) -> None:
    answer = slow_drip(slow_service.port, total=1_000_000, step=10, pause=0.2, budget=30)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # an upload at a normal rate still works with the same limits
    body, content_type = multipart([instance_bytes()])
    ok = httpx.post(
        f"{slow_service.base_url}/v2/studies",
        content=body,
        headers={"Content-Type": content_type, **JSON},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    assert b'"status":408' in (tmp_path / "audit.jsonl").read_bytes()
