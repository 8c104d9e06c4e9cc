from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
