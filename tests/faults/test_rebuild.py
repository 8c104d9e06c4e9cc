"""Index rebuilt from the lake: store a varied corpus (every sample file, multi-frame, two partitions, a
stale older version of one instance), drop the database, run ``python -m dicomlake reindex --from-lake``
and get identical QIDO, metadata, retrieve and frame answers; run again (resumable: nothing redone)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from dicomlake.app import create_app
from dicomlake.storage.blob_store import AzureBlobStore
from tests.conftest import PostgresServer, make_settings
from tests.factories import instance_bytes, make_dataset, multipart, new_uid, parse_multipart, to_bytes
from tests.helpers.asgi import running_app

pytestmark = pytest.mark.integration
SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "dicom-samples").glob("*.dcm"))
JSON = {"Accept": "application/dicom+json"}
ROOT = "AHDS/workspace/dicom/dicom/"


async def _stow(client: httpx.AsyncClient, parts: list[bytes], prefix: str) -> set[str]:
    body, content_type = multipart(parts)
    r = await client.post(f"{prefix}/studies", content=body, headers={"Content-Type": content_type, **JSON})
    assert r.status_code in (200, 202, 409), r.text
    return {i["00081155"]["Value"][0] for i in r.json().get("00081199", {}).get("Value", [])}


async def _answers(client: httpx.AsyncClient, prefixes: list[str]) -> dict[str, Any]:
    """Everything a client can see: QIDO at three levels, metadata of every study, every instance's
    bytes and first frame."""
    out: dict[str, Any] = {}
    for prefix in prefixes:
        studies = await client.get(f"{prefix}/studies", params={"includefield": "all"}, headers=JSON)
        out[f"{prefix} studies"] = sorted(studies.json(), key=lambda s: s["0020000D"]["Value"][0])
        for study in [s["0020000D"]["Value"][0] for s in studies.json()]:
            series = await client.get(f"{prefix}/studies/{study}/series", params={"includefield": "all"}, headers=JSON)
            out[f"{prefix} {study} series"] = series.json()
            instances = await client.get(
                f"{prefix}/studies/{study}/instances", params={"includefield": "all"}, headers=JSON
            )
            out[f"{prefix} {study} instances"] = instances.json()
            metadata = await client.get(f"{prefix}/studies/{study}/metadata", headers=JSON)
            assert metadata.status_code == 200
            out[f"{prefix} {study} metadata"] = metadata.json()
            for item in instances.json():
                se, sop = item["0020000E"]["Value"][0], item["00080018"]["Value"][0]
                url = f"{prefix}/studies/{study}/series/{se}/instances/{sop}"
                r = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
                out[url] = (r.status_code, r.content)
                frame = await client.get(
                    url + "/frames/1",
                    headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
                )
                payload = (
                    parse_multipart(frame.content, frame.headers["content-type"]) if frame.status_code == 200 else []
                )
                out[url + " frame"] = (frame.status_code, [p[1] for p in payload])
    return out


async def _recreate(postgres_server: PostgresServer, database_url: str) -> None:
    name = database_url.rpartition("/")[2]
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()


def _reindex(database_url: str, azurite: str, container: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DICOM_DATABASE_URL": database_url,
        "DICOM_STORAGE_CONNECTION_STRING": azurite,
        "DICOM_STORAGE_ACCOUNT_URL": "",
        "DICOM_STORAGE_CONTAINER": container,
    }
    return subprocess.run(
        [sys.executable, "-m", "dicomlake", "reindex", "--from-lake"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_drop_the_database_and_rebuild_from_the_lake(
    postgres_server: PostgresServer, database_url: str, azurite: str, container: str, blob_store: AzureBlobStore
) -> None:
    settings = make_settings(database_url, azurite, container)
    prefixes = ["/v2", "/v2/partitions/second"]
    stale_name = ""
    async with running_app(create_app(settings)) as client:
        stored = await _stow(client, [p.read_bytes() for p in SAMPLES], "/v2")
        assert len(stored) >= 5  # several samples share SOP Instance UIDs (45070 for the later ones)
        study = new_uid()
        multi = to_bytes(make_dataset(study=study, frames=5, rows=256, columns=256))
        stored |= await _stow(client, [multi, instance_bytes(study=study)], "/v2")
        stored |= await _stow(client, [instance_bytes(rows=64, columns=64) for _ in range(3)], "/v2/partitions/second")
        before = await _answers(client, prefixes)
        # An older version of one instance still in the lake (a replacement whose old file is not yet deleted).
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            row = await pool.fetchrow(
                "SELECT blob_name, watermark FROM instances WHERE status = 2 ORDER BY watermark LIMIT 1"
            )
            highest = await pool.fetchval("SELECT max(watermark) FROM instances")
        finally:
            await pool.close()
        stale_name = row["blob_name"].replace(f"_{row['watermark']}.dcm", "_0.dcm")
        await blob_store.upload_bytes(stale_name, b"an older version")

    await _recreate(postgres_server, database_url)
    result = await asyncio.to_thread(_reindex, database_url, azurite, container)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rebuilt {len(stored)} instance(s)" in result.stdout, result.stdout
    assert "1 older version(s) queued" in result.stdout
    read, _, total = result.stdout.rpartition("read ")[2].partition(" of ")
    assert int(read) < int(total.split()[0])  # ranged header reads, not whole files

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SELECT last_value FROM instance_watermark_seq") >= highest
        assert await pool.fetchval("SELECT count(*) FROM changefeed WHERE action = 'create'") == len(stored)
        assert await pool.fetchval("SELECT count(*) FROM deletion_queue WHERE blob_name = $1", stale_name) == 1
        # The command recorded its run as an operation (visible in GET /v2/operations/{id}).
        op = await pool.fetchrow("SELECT status, percent_complete, results::text AS results FROM operations")
        assert (op["status"], op["percent_complete"]) == ("completed", 100)
        assert f'"instancesIndexed": {len(stored)}' in op["results"]
    finally:
        await pool.close()
    async with running_app(create_app(settings)) as client:
        after = await _answers(client, prefixes)
        assert after.keys() == before.keys()
        for key in before:
            assert after[key] == before[key], key
        new = await _stow(client, [instance_bytes()], "/v2")  # the sequence moved past every recovered version
        assert len(new) == 1

    again = await asyncio.to_thread(_reindex, database_url, azurite, container)
    assert again.returncode == 0, again.stderr
    assert "rebuilt 0 instance(s)" in again.stdout
