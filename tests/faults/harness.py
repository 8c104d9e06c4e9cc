"""Fault harness: dedicated PostgreSQL and Azurite on loopback, fault proxies in front of both, service
processes that can be killed (``kill -9``) or stopped at named crash points, and a client that keeps a
ledger of what the service acknowledged (checked afterwards by ``invariants.check``)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from dicomlake.devstack.azurite import ACCOUNT, ACCOUNT_KEY, LocalAzurite
from dicomlake.devstack.postgres import LocalPostgres
from dicomlake.storage.blob_store import AzureBlobStore
from tests.factories import multipart, zero_preamble
from tests.faults.proxy import FaultProxy
from tests.helpers.server import ServiceProcess

ROOT = "AHDS/workspace/dicom/dicom/"
DICOM_JSON = {"Accept": "application/dicom+json"}


def azurite_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


@dataclass
class Servers:
    """PostgreSQL and Azurite owned by the fault tests (so they may be frozen), with a proxy before each."""

    postgres: LocalPostgres
    azurite: LocalAzurite
    pg_proxy: FaultProxy
    blob_proxy: FaultProxy

    def reset_faults(self) -> None:
        self.pg_proxy.set("pass")
        self.blob_proxy.set("pass")
        self.azurite.resume()
        if self.postgres._process is not None:
            self.thaw_postgres()

    def _postgres_pids(self) -> list[int]:
        """The postmaster and its children (each backend runs in its own process group)."""
        assert self.postgres._process is not None
        root = self.postgres._process.pid
        pids = [root]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(stat.parent.name))
        return pids

    def freeze_postgres(self) -> None:
        for pid in self._postgres_pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw_postgres(self) -> None:
        for pid in self._postgres_pids():
            os.kill(pid, signal.SIGCONT)


@dataclass
class Ledger:
    """What clients were told: acknowledged stores, acknowledged deletes, every status seen."""

    stored: dict[str, tuple[str, str, str, bytes]] = field(
        default_factory=dict
    )  # sop -> partition, study, series, bytes
    deleted: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    statuses: list[tuple[str, int, str | None]] = field(default_factory=list)  # what, status, Retry-After

    def record(self, what: str, response: httpx.Response) -> None:
        self.statuses.append((what, response.status_code, response.headers.get("retry-after")))

    @property
    def server_errors(self) -> list[tuple[str, int, str | None]]:
        """5xx answers other than a 503 carrying Retry-After (which is the wanted answer to an outage)."""
        return [s for s in self.statuses if s[1] >= 500 and not (s[1] == 503 and s[2])]


class Stack:
    """One test's database and container, and the service processes started against them."""

    def __init__(self, servers: Servers, tmp: Path) -> None:
        self.servers = servers
        self.tmp = tmp
        self.database = f"f_{secrets.token_hex(5)}"
        self.container = f"f-{secrets.token_hex(5)}"
        self.services: list[ServiceProcess] = []
        self.ledger = Ledger()

    @property
    def direct_dsn(self) -> str:
        return self.servers.postgres.dsn(self.database)

    @property
    def proxied_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.servers.pg_proxy.port}/{self.database}"

    @property
    def direct_storage(self) -> str:
        return self.servers.azurite.connection_string

    async def create(self) -> None:
        admin = await asyncpg.connect(self.servers.postgres.admin_dsn)
        try:
            await admin.execute(f"CREATE DATABASE {self.database}")
        finally:
            await admin.close()

    async def drop(self) -> None:
        for s in self.services:
            stop_service(s)
        self.servers.reset_faults()
        admin = await asyncpg.connect(self.servers.postgres.admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        finally:
            await admin.close()
        async with self.blob_store() as blobs:
            await blobs.delete_container()

    def env(self, *, crash_point: str | None = None, probe_interval: int = 2) -> dict[str, str]:
        env = {
            "DICOM_DATABASE_URL": self.proxied_dsn,
            "DICOM_STORAGE_CONNECTION_STRING": azurite_connection_string(self.servers.blob_proxy.port),
            "DICOM_STORAGE_ACCOUNT_URL": "",
            "DICOM_STORAGE_CONTAINER": self.container,
            "DICOM_STORAGE_CREATE_CONTAINER": "true",
            "DICOM_HEALTH_PROBE_INTERVAL_SECONDS": str(probe_interval),
            "DICOM_LOG_LEVEL": "WARNING",
            "DICOMLAKE_TEST_CRASH_POINT": crash_point or "",
        }
        return env

    def start_service(self, *, crash_point: str | None = None, probe_interval: int = 2) -> ServiceProcess:
        n = len(self.services)
        service = ServiceProcess(
            self.env(crash_point=crash_point, probe_interval=probe_interval), log_path=self.tmp / f"service-{n}.log"
        )
        service.start()
        self.services.append(service)
        return service

    def blob_store(self) -> AzureBlobStore:
        return AzureBlobStore.from_connection_string(self.direct_storage, self.container)

    def service_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("service-*.log")))

    # --- client operations recording the ledger ----------------------------------------------------
    async def stow(
        self,
        client: httpx.AsyncClient,
        base: str,
        parts: list[bytes],
        *,
        partition: str | None = None,
        method: str = "POST",
    ) -> httpx.Response | None:
        """Store ``parts``; acknowledged instances go into the ledger. None if the connection broke."""
        body, content_type = multipart(parts)
        prefix = f"/v2/partitions/{partition}" if partition else "/v2"
        try:
            response = await client.request(
                method, f"{base}{prefix}/studies", content=body, headers={"Content-Type": content_type, **DICOM_JSON}
            )
        except httpx.TransportError:
            return None
        self.ledger.record("stow", response)
        if response.status_code in (200, 202, 409) and response.headers.get("content-type", "").startswith(
            "application/dicom+json"
        ):
            acknowledged = {
                item["00081155"]["Value"][0] for item in response.json().get("00081199", {}).get("Value", [])
            }
            for data in parts:
                uids = _uids(data)
                if uids[2] in acknowledged:
                    self.ledger.stored[uids[2]] = (partition or "Microsoft.Default", *uids[:2], zero_preamble(data))
                    self.ledger.deleted.discard(uids[2])
        return response

    async def delete(
        self, client: httpx.AsyncClient, base: str, path: str, sops: Iterable[str]
    ) -> httpx.Response | None:
        try:
            response = await client.delete(f"{base}{path}")
        except httpx.TransportError:
            return None
        self.ledger.record("delete", response)
        if response.status_code in (200, 202, 204):
            for sop in sops:
                self.ledger.deleted.add(sop)
        return response


def _uids(data: bytes) -> tuple[str, str, str]:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def kill9(service: ServiceProcess) -> None:
    assert service.process is not None
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=30)


def stop_service(service: ServiceProcess) -> None:
    if service.process is not None and service.process.poll() is None:
        service.process.send_signal(signal.SIGKILL)
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def wait_exit(service: ServiceProcess, timeout: float = 30.0) -> int | None:
    assert service.process is not None
    try:
        return service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


async def wait_until(predicate: Any, *, timeout: float, interval: float = 0.25) -> float | None:
    """Poll an async predicate; seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(interval)
    return None


def pid_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


__all__ = ["DICOM_JSON", "ROOT", "Ledger", "Servers", "Stack", "kill9"]
