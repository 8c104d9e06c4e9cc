"""Data partitions: the list (``GET /v2/partitions``). A partition is created by its first store
(``InstanceIndex.partition_key(name, create=True)``); ``Microsoft.Default`` always exists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from dicomlake.index.instances import _DB_DOWN, _db_errors


@dataclass(frozen=True, slots=True)
class Partition:
    key: int
    name: str
    created_at: dt.datetime


async def list_partitions(pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> list[Partition]:
    try:
        async with pool.acquire(timeout=acquire_timeout) as conn:
            rows = await conn.fetch("SELECT partition_key, name, created_at FROM partitions ORDER BY partition_key")
    except _DB_DOWN as e:
        raise _db_errors(e) from e
    return [Partition(r["partition_key"], r["name"], r["created_at"]) for r in rows]
