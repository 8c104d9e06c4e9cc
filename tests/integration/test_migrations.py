from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dicomlake.index.migrate import apply_migrations, current_version, load_migrations

pytestmark = pytest.mark.integration


async def test_concurrent_replicas_migrate_once(postgres_server: object, database_url: str) -> None:
    # A fresh database, not the template: drop everything first.
    conn = await asyncpg.connect(database_url)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    await conn.close()

    async def replica() -> list[int]:
        c = await asyncpg.connect(database_url)
        try:
            return await apply_migrations(c)
        finally:
            await c.close()

    results = await asyncio.gather(*(replica() for _ in range(4)))
    expected = [m.version for m in load_migrations()]
    assert sorted(results, key=len)[-1] == expected
    assert sum(len(r) for r in results) == len(expected)  # each migration applied exactly once
    c = await asyncpg.connect(database_url)
    try:
        assert await current_version(c) == expected[-1]
        assert await apply_migrations(c) == []
        assert await c.fetchval("SELECT name FROM partitions") == "Microsoft.Default"
    finally:
        await c.close()
