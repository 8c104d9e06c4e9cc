"""Lake health probe: every interval, write a small file under ``healthCheck/``, read it back, and
delete this replica's previous file (and any file older than a few intervals, left by a replica that
died). The result says, in words a PACS admin understands, why storage cannot be used."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import time

import orjson

from dicomlake.errors import (
    ContainerNotFoundError,
    DependencyFailedError,
    DicomWebError,
    StorageAccessDeniedError,
    StorageUnavailableError,
)
from dicomlake.health import ComponentHealth, HealthStatus
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 15.0


class LakeProbe:
    def __init__(self, blobs: AzureBlobStore, layout: LakeLayout, *, interval: float, account_hint: str) -> None:
        self._blobs = blobs
        self._layout = layout
        self.interval = interval
        self._account_hint = account_hint
        self.replica_id = f"{os.uname().nodename[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._previous: str | None = None
        self.health = ComponentHealth(name="storage")

    async def run_once(self) -> ComponentHealth:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._probe()
        except TimeoutError:
            self._fail(StorageUnavailableError(f"Storage did not answer within {PROBE_TIMEOUT_SECONDS:.0f} s."))
        except DicomWebError as e:
            self._fail(e)
        return self.health

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            except TimeoutError:
                pass
            if stop.is_set():
                break
            try:
                await self.run_once()
            except Exception:  # never let the probe loop die
                logger.exception("lake probe failed unexpectedly")
        await self.cleanup()

    async def cleanup(self) -> None:
        """Remove this replica's last probe file on shutdown (best effort)."""
        if self._previous is not None:
            try:
                await self._blobs.delete(self._previous)
            except DicomWebError:
                pass
            self._previous = None

    async def _probe(self) -> None:
        now = dt.datetime.now(dt.UTC)
        name = f"{self._layout.health_check_prefix}{now:%Y%m%dT%H%M%S}-{self.replica_id}.json"
        payload = orjson.dumps({"replica": self.replica_id, "writtenAt": now.isoformat()})
        await self._blobs.upload_bytes(name, payload, content_type="application/json")
        read_back = await self._blobs.read_bytes(name)
        if read_back != payload:
            raise StorageUnavailableError("The health file read back from storage differs from what was written.")
        previous, self._previous = self._previous, name
        if previous is not None:
            await self._blobs.delete(previous)
        await self._sweep_stale(keep=name)
        self.health.set(
            HealthStatus.HEALTHY,
            f"Wrote, read and deleted a health file under {self._layout.health_check_prefix} "
            f"in container '{self._blobs.container_name}'.",
            lastProbe=now.isoformat(),
        )

    async def _sweep_stale(self, keep: str) -> None:
        cutoff = time.time() - 3 * self.interval - 5
        async for info in self._blobs.list_blobs(self._layout.health_check_prefix):
            if info.name != keep and info.last_modified is not None and info.last_modified.timestamp() < cutoff:
                await self._blobs.delete(info.name)

    def _fail(self, error: DicomWebError) -> None:
        container = self._blobs.container_name
        where = f"container '{container}' of storage account '{self._account_hint}'"
        if isinstance(error, ContainerNotFoundError):
            description = (
                f"The {where} does not exist (was it deleted?). Recreate it, or point "
                "DICOM_STORAGE_CONTAINER at the right one."
            )
        elif isinstance(error, StorageAccessDeniedError):
            description = f"Access to the {where} was refused ({error.code}): {error.message}"
            if error.code == "StorageAccessDenied":
                description += (
                    " Grant the service's managed identity the role 'Storage Blob Data Contributor' on the container."
                )
        else:
            description = f"The {where} cannot be used ({error.code}): {error.message}"
        if self.health.status is HealthStatus.HEALTHY or self.health.description != description:
            logger.warning("lake probe failed", extra={"code": error.code})
        # Storage that answers but refuses (role revoked, container gone: the 424 class) is Degraded: the
        # process is fine and cannot fix it by restarting. Storage that cannot be reached is Unhealthy.
        status = HealthStatus.DEGRADED if isinstance(error, DependencyFailedError) else HealthStatus.UNHEALTHY
        self.health.set(status, description, errorCode=error.code)
