"""The stack every out-of-process benchmark runs against: a throwaway PostgreSQL, an on-disk Azurite and
the service as its own process (`python -m dicomlake serve`), all on loopback."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.server import ServiceProcess

from dicomlake.devstack.azurite import LocalAzurite
from dicomlake.devstack.ports import free_port
from dicomlake.devstack.postgres import LocalPostgres, ensure_database

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchStack:
    tmp: Path
    postgres: LocalPostgres
    azurite: LocalAzurite
    service: ServiceProcess


@contextlib.asynccontextmanager
async def bench_stack(prefix: str, *, env: dict[str, str] | None = None) -> AsyncIterator[BenchStack]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tmp = Path(tmpdir)
        pg = LocalPostgres(tmp / "pg", free_port(), durable=False)
        pg.start()
        azurite = LocalAzurite(ROOT, free_port(), location=tmp / "azurite")
        try:
            azurite.start()
            await ensure_database(pg.admin_dsn, "dicomlake")
            service = ServiceProcess(
                {
                    "DICOM_DATABASE_URL": pg.dsn("dicomlake"),
                    "DICOM_STORAGE_CONNECTION_STRING": azurite.connection_string,
                    "DICOM_STORAGE_CREATE_CONTAINER": "true",
                    "DICOM_LOG_LEVEL": "WARNING",
                    **(env or {}),
                },
                log_path=tmp / "service.log",
            )
            service.start()
            try:
                yield BenchStack(tmp, pg, azurite, service)
            finally:
                service.stop()
        finally:
            azurite.stop()
            pg.stop()
