from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dicomlake.devstack.azurite import LocalAzurite
from dicomlake.devstack.ports import free_port
from tests.conftest import PROJECT_ROOT
from tests.helpers.server import ServiceProcess


@pytest.fixture
def service(database_url: str, azurite: str, container: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The real service (`python -m dicomlake serve`) on a free port, with this test's database and container."""
    process = ServiceProcess(
        {
            "DICOM_DATABASE_URL": database_url,
            "DICOM_STORAGE_CONNECTION_STRING": azurite,
            "DICOM_STORAGE_ACCOUNT_URL": "",
            "DICOM_STORAGE_CONTAINER": container,
            "DICOM_STORAGE_CREATE_CONTAINER": "true",
        },
        log_path=tmp_path / "service.log",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def tls_azurite(tmp_path: Path) -> Iterator[tuple[LocalAzurite, Path]]:
    """Azurite in OAuth mode over HTTPS (a certificate from a throw-away CA), as the managed-identity path needs."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    server = LocalAzurite(PROJECT_ROOT, free_port(), oauth_cert=(cert_path, key_path))
    server.start(log_path=tmp_path / "azurite.log")
    try:
        yield server, ca_path
    finally:
        server.stop()
