"""`make run`'s embedded stack: starts, serves, writes the health file, stops cleanly, restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dicomlake.devstack.azurite import ACCOUNT, ACCOUNT_KEY
from dicomlake.devstack.ports import free_port
from dicomlake.storage.blob_store import AzureBlobStore
from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_once(data_dir: Path, log: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_")}
    env |= {"DICOM_PORT": str(port), "DICOM_HEALTH_PROBE_INTERVAL_SECONDS": "2"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dicomlake", "devstack", "--data-dir", str(data_dir)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready within 90 s:\n" + log.read_text()
            time.sleep(0.3)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/v2" in text
        assert "AccountName=devstoreaccount1" in text
        azurite_port = int(re.search(r"starting Azurite on 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        pg_port = int(re.search(r"starting embedded PostgreSQL on 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]

        async def health_files() -> list[str]:
            conn = (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{azurite_port}/{ACCOUNT};"
            )
            async with AzureBlobStore.from_connection_string(conn, "dicom") as store:
                return [b.name async for b in store.list_blobs("AHDS/workspace/dicom/dicom/healthCheck/")]

        assert len(asyncio.run(health_files())) == 1
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
    assert not _port_open(port)
    assert not _port_open(azurite_port)
    assert not _port_open(pg_port)
    assert "stopping PostgreSQL" in log.read_text()


def test_make_run_stack_starts_and_stops_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "devstack"
    _run_once(data_dir, tmp_path / "first.log")
    _run_once(data_dir, tmp_path / "second.log")  # the same data directory, kept across restarts
    assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()
