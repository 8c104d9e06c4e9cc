"""Test session: real PostgreSQL (embedded) and Azurite, started once; every test gets its own database
(cloned from a migrated template) and its own container. A server that cannot start fails the run with
instructions; nothing is skipped.

Point the session at existing servers with DICOMLAKE_TEST_PG_DSN (an admin DSN) and
DICOMLAKE_TEST_AZURITE_CONNECTION_STRING.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from dicomlake.config import CompatibilityProfile, DatabaseSettings, Settings, StorageSettings
from dicomlake.devstack.azurite import AzuriteNotAvailable, LocalAzurite
from dicomlake.devstack.ports import free_port
from dicomlake.devstack.postgres import LocalPostgres, PostgresNotAvailable
from dicomlake.index.migrate import apply_migrations
from dicomlake.storage.blob_store import AzureBlobStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DB = "dicomlake_template"


@dataclass(frozen=True)
class PostgresServer:
    admin_dsn: str

    def dsn(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    existing = os.environ.get("DICOMLAKE_TEST_PG_DSN")
    if existing:
        yield PostgresServer(existing)
        return
    with tempfile.TemporaryDirectory(prefix="dicomlake-pg-") as tmp:
        server = LocalPostgres(Path(tmp), free_port(), durable=False)
        try:
            server.start()
        except PostgresNotAvailable as e:
            pytest.fail(f"PostgreSQL is required for the tests and could not start: {e}", pytrace=False)
        try:
            yield PostgresServer(server.admin_dsn)
        finally:
            server.stop()


@pytest.fixture(scope="session")
def template_db(postgres_server: PostgresServer) -> str:
    async def build() -> None:
        admin = await asyncpg.connect(postgres_server.admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(postgres_server.dsn(TEMPLATE_DB))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return TEMPLATE_DB


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Connection string of an in-memory Azurite for the whole session."""
    existing = os.environ.get("DICOMLAKE_TEST_AZURITE_CONNECTION_STRING")
    if existing:
        yield existing
        return
    server = LocalAzurite(PROJECT_ROOT, free_port())
    try:
        server.start()
    except AzuriteNotAvailable as e:
        pytest.fail(f"Azurite is required for the tests and could not start: {e}", pytrace=False)
    try:
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture
async def database_url(postgres_server: PostgresServer, template_db: str) -> AsyncIterator[str]:
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    finally:
        await admin.close()
    yield postgres_server.dsn(name)
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def container(azurite: str) -> AsyncIterator[str]:
    name = f"t-{secrets.token_hex(6)}"
    yield name
    async with AzureBlobStore.from_connection_string(azurite, name) as store:
        await store.delete_container()


@pytest.fixture
async def blob_store(azurite: str, container: str) -> AsyncIterator[AzureBlobStore]:
    async with AzureBlobStore.from_connection_string(azurite, container) as store:
        await store.create_container()
        yield store


def make_settings(
    database_url: str,
    connection_string: str,
    container: str,
    *,
    compatibility: CompatibilityProfile = CompatibilityProfile.STANDARD,
    probe_interval: float = 30.0,
) -> Settings:
    return Settings(
        storage=StorageSettings(container=container, connection_string=connection_string, create_container=True),
        database=DatabaseSettings(url=database_url, pool_max=8),
        compatibility=compatibility,
        health_probe_interval=probe_interval,
    )


@pytest.fixture
def settings(database_url: str, azurite: str, container: str) -> Settings:
    return make_settings(database_url, azurite, container)
