"""A storage token expires in the middle of a long upload and is replaced: the service on managed identity
(the local identity endpoint issues 6-second tokens) stores a 24 MiB instance whose upload to storage
lasts well over one token lifetime; the STOW answers 200, the instance retrieves byte-identical, and the
identity endpoint issued new storage tokens while the upload ran.

The slowness must be between the service and storage: the service spools each part of a STOW before
uploading it, so a slowly sent request body only delays the start of the upload. A TCP proxy in front of
Azurite (TLS passes through it) delays each chunk it forwards. The health probe runs once at start-up
only, so every token issued during the upload was asked for by the upload's own requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dicomlake.devstack.azurite import LocalAzurite
from tests.factories import make_dataset, multipart, to_bytes
from tests.faults.proxy import FaultProxy
from tests.helpers.identity import IdentityEndpoint
from tests.helpers.server import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
LIFETIME = 6
STORAGE = "https://storage.azure.com"
#: Seconds each forwarded chunk (at most 64 KiB, segments of 1460 bytes) is held: ~15-20 s for 24 MiB here.
DELAY = 0.12


@pytest.fixture
def slow_link(tls_azurite: tuple[LocalAzurite, Path]) -> Iterator[FaultProxy]:
    azurite, _ = tls_azurite
    proxy = FaultProxy(azurite.port, receive_buffer=64 * 1024, mss=1460).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _storage_tokens(identity: IdentityEndpoint, start: float, end: float) -> list[float]:
    return sorted(
        float(r["at"]) for r in identity.requests if r.get("resource") == STORAGE and start <= float(r["at"]) <= end
    )


async def test_token_expiring_during_a_long_upload_is_replaced(
    tls_azurite: tuple[LocalAzurite, Path], slow_link: FaultProxy, database_url: str, tmp_path: Path
) -> None:
    azurite, ca_path = tls_azurite
    account_url = azurite.account_url.replace(f":{azurite.port}/", f":{slow_link.port}/")
    data = to_bytes(make_dataset(rows=1024, columns=1024, frames=12))
    body, content_type = multipart([data])
    sent = 0.0

    async def request_body() -> AsyncIterator[bytes]:
        nonlocal sent
        for offset in range(0, len(body), 1024 * 1024):
            yield body[offset : offset + 1024 * 1024]
        sent = time.time()  # from here on the service uploads what it spooled

    with IdentityEndpoint(lifetime=LIFETIME) as identity:
        service = ServiceProcess(
            {
                "DICOM_STORAGE_ACCOUNT_URL": account_url,
                "DICOM_STORAGE_CONNECTION_STRING": "",
                "DICOM_STORAGE_CONTAINER": "lake",
                "DICOM_STORAGE_CREATE_CONTAINER": "true",
                "DICOM_DATABASE_URL": database_url,
                "DICOM_HEALTH_PROBE_INTERVAL_SECONDS": "3600",
                "SSL_CERT_FILE": str(ca_path),
                **identity.environ(),
            },
            log_path=tmp_path / "service.log",
        )
        service.start()
        try:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as client:
                slow_link.set("delay", delay=DELAY)
                r = await client.post(
                    "/v2/studies",
                    content=request_body(),
                    headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
                )
                answered = time.time()
                slow_link.set("pass")
                assert r.status_code == 200, r.text
                url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
                got = await client.get(httpx.URL(url).path, headers={"Accept": "application/dicom; transfer-syntax=*"})
                assert got.status_code == 200
                assert got.content[128:] == data[128:]
        finally:
            service.stop()
        assert "Traceback" not in service.log()

    upload_seconds = answered - sent
    tokens = _storage_tokens(identity, sent, answered)
    print(f"upload {upload_seconds:.1f} s, storage tokens issued during it at +{[round(t - sent, 1) for t in tokens]}")
    # The upload outlived a token: any token it started with had expired before it ended ...
    assert upload_seconds > LIFETIME + 1, f"the upload took only {upload_seconds:.1f} s; slow the link down"
    # ... and the credential fetched replacements while it ran, the last one after a whole lifetime had passed.
    assert len(tokens) >= 2, tokens
    assert tokens[-1] - sent > LIFETIME, tokens
