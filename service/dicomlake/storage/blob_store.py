"""Blob store adapter over ``azure.storage.blob.aio``.

The data path uses the Blob endpoint, which works on hierarchical-namespace (Data Lake Gen2) accounts
too and is the only one Azurite offers. Uploads stream in staged blocks with bounded memory; reads
stream in chunks, optionally over a byte range. SDK retries are tuned to fail in seconds rather than
the SDK default of more than a minute, and every SDK exception is translated here into the service's
own error tree (``dicomlake.errors``); nothing above this module imports an Azure exception.

Messages never contain blob names (they carry UIDs); callers add the context a client needs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn, Self

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, ContentSettings, StandardBlobTier
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry, StorageStreamDownloader

from dicomlake.errors import (
    BlobArchivedError,
    BlobChangedError,
    BlobNotFoundError,
    ContainerNotFoundError,
    DependencyFailedError,
    StorageAccessDeniedError,
    StorageUnavailableError,
)

#: Size of one staged block. Memory held by one upload is at most ``block_size * (max_in_flight + 1)``.
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
DEFAULT_BLOCKS_IN_FLIGHT = 3
#: Download granularity: the first request of a download fetches at most this much (so opening a blob
#: before streaming costs little memory), later ones the same.
DOWNLOAD_CHUNK_SIZE = 4 * 1024 * 1024
DOWNLOAD_PREFETCH_CHUNKS = 2
#: The SDK's transport has a connect and a read timeout but no write timeout: a block sent to a storage
#: endpoint that stopped reading (frozen, dead link) waits for the OS to give up. Each ``stage_block`` and
#: ``commit_block_list`` call therefore has a deadline derived from its size and the slowest throughput
#: still accepted (4 MiB in 30 s, ~140 KiB/s), never below ``MIN_UPLOAD_DEADLINE_SECONDS``; past it the
#: upload fails with ``StorageUnavailableError`` (503 + Retry-After) and the store discards its reservation.
MIN_UPLOAD_BYTES_PER_SECOND = DEFAULT_BLOCK_SIZE / 30
MIN_UPLOAD_DEADLINE_SECONDS = 30.0
ONLINE_TIERS = ("Hot", "Cool", "Cold")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    tier: str | None = None
    last_modified: datetime | None = None
    archive_status: str | None = None


@dataclass(slots=True)
class StorageCounters:
    """Bytes moved through this adapter, for benchmarks and diagnostics."""

    bytes_read: int = 0
    bytes_written: int = 0
    read_requests: int = 0


def upload_deadline(size: int) -> float:
    """Seconds one storage write of ``size`` bytes may take (SDK retries included) before it counts as stalled."""
    return max(MIN_UPLOAD_DEADLINE_SECONDS, size / MIN_UPLOAD_BYTES_PER_SECOND)


@contextlib.asynccontextmanager
async def _write_deadline(size: int) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(upload_deadline(size)):
            yield
    except TimeoutError as e:
        raise StorageUnavailableError("Storage stopped accepting the upload (write deadline passed).") from e


def _client_options() -> dict[str, Any]:
    return {
        # Fail fast: two quick retries (about 1 s apart) instead of 15 s+ exponential back-off. A response
        # that stalls for read_timeout is not retried (retry_read=0): storage that accepts connections but
        # does not answer (frozen, overloaded) then becomes a 503 within ~10 s instead of minutes.
        "retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=1, retry_read=0),
        "connection_timeout": 5,
        "read_timeout": 10,
        "max_single_put_size": DEFAULT_BLOCK_SIZE,
        "max_single_get_size": DOWNLOAD_CHUNK_SIZE,
        "max_chunk_get_size": DOWNLOAD_CHUNK_SIZE,
    }


class BlobDownload:
    """An opened download: size and ETag known before the first byte is streamed."""

    def __init__(self, downloader: StorageStreamDownloader[bytes], counters: StorageCounters) -> None:
        self._downloader = downloader
        self._counters = counters
        props = downloader.properties
        self.size: int = downloader.size
        self.etag: str = str(props.etag)
        self.content_length: int = downloader.size
        #: User-defined blob metadata (the store writes ``sha256``; the lake rebuild reads it).
        self.metadata: dict[str, str] = dict(props.metadata or {})

    async def chunks(self, *, prefetch: int = DOWNLOAD_PREFETCH_CHUNKS) -> AsyncIterator[bytes]:
        """Stream the blob. Up to ``prefetch`` chunks are fetched ahead while the consumer is still
        sending the previous one, so storage and client transfers overlap (memory: ``prefetch`` chunks)."""
        if prefetch <= 0:
            with translate_storage_errors():
                async for chunk in self._downloader.chunks():
                    self._counters.bytes_read += len(chunk)
                    yield chunk
            return
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=prefetch)

        async def produce() -> None:
            try:
                with translate_storage_errors():
                    async for chunk in self._downloader.chunks():
                        self._counters.bytes_read += len(chunk)
                        await queue.put(chunk)
                await queue.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # handed to the consumer, raised there
                await queue.put(e)

        producer = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def read_all(self) -> bytes:
        return b"".join([c async for c in self.chunks()])


class AzureBlobStore:
    """One container of one storage account. Create with ``from_connection_string`` or an account URL."""

    def __init__(
        self,
        account_url: str,
        container: str,
        credential: AsyncTokenCredential,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self._service = BlobServiceClient(account_url, credential=credential, **_client_options())
        self._init(container, block_size)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        connection_verify: str | bool = True,
    ) -> AzureBlobStore:
        self = cls.__new__(cls)
        self._service = BlobServiceClient.from_connection_string(
            connection_string, connection_verify=connection_verify, **_client_options()
        )
        self._init(container, block_size)
        return self

    def _init(self, container: str, block_size: int) -> None:
        self._container: ContainerClient = self._service.get_container_client(container)
        self.block_size = block_size
        self.counters = StorageCounters()

    @property
    def account_name(self) -> str:
        return str(self._service.account_name)

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._container.close()
        await self._service.close()

    # --- container -------------------------------------------------------------------------------
    async def container_exists(self) -> bool:
        with translate_storage_errors():
            return bool(await self._container.exists())

    async def create_container(self) -> None:
        """Create the container; succeed if it exists already."""
        with translate_storage_errors():
            try:
                await self._container.create_container()
            except ResourceExistsError:
                pass

    async def delete_container(self) -> None:
        with translate_storage_errors():
            try:
                await self._container.delete_container()
            except ResourceNotFoundError:
                pass

    # --- write -----------------------------------------------------------------------------------
    async def upload_stream(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> BlobInfo:
        """Stream ``chunks`` into a block blob in staged blocks, then commit; memory stays bounded.

        Several blocks are staged concurrently (``DEFAULT_BLOCKS_IN_FLIGHT``) so throughput is not
        limited by one round trip per block. Nothing is visible under ``name`` until the final commit.
        """
        blob = self._container.get_blob_client(name)
        prefix = secrets.token_hex(8)
        block_ids: list[str] = []
        in_flight: set[asyncio.Task[None]] = set()
        size = 0

        async def stage(block_id: str, data: bytes) -> None:
            async with _write_deadline(len(data)):
                with translate_storage_errors():
                    # A BytesIO body: aiohttp streams it instead of warning that raw bytes block the loop.
                    await blob.stage_block(block_id, io.BytesIO(data), length=len(data))
            self.counters.bytes_written += len(data)

        async def submit(data: bytes) -> None:
            block_id = base64.b64encode(f"{prefix}-{len(block_ids):08d}".encode()).decode()
            block_ids.append(block_id)
            task = asyncio.create_task(stage(block_id, data))
            in_flight.add(task)
            if len(in_flight) >= DEFAULT_BLOCKS_IN_FLIGHT:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    in_flight.discard(t)
                    t.result()

        buffer = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= self.block_size:
                    await submit(bytes(buffer[: self.block_size]))
                    del buffer[: self.block_size]
            if buffer or not block_ids:
                await submit(bytes(buffer))
                buffer = bytearray()
            for task in asyncio.as_completed(list(in_flight)):
                await task
            in_flight.clear()
            async with _write_deadline(0):
                with translate_storage_errors():
                    result = await blob.commit_block_list(
                        [BlobBlock(block_id) for block_id in block_ids],
                        content_settings=ContentSettings(content_type=content_type),
                        metadata=metadata,
                    )
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        return BlobInfo(name=name, size=size, etag=str(result["etag"]), last_modified=_as_datetime(result))

    async def upload_bytes(self, name: str, data: bytes, *, content_type: str = "application/octet-stream") -> BlobInfo:
        """Upload a small payload in one request (overwrites)."""
        blob = self._container.get_blob_client(name)
        with translate_storage_errors():
            result = await blob.upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )
        self.counters.bytes_written += len(data)
        return BlobInfo(name=name, size=len(data), etag=str(result["etag"]), last_modified=result.get("last_modified"))

    # --- read ------------------------------------------------------------------------------------
    async def open_download(
        self, name: str, *, offset: int = 0, length: int | None = None, etag: str | None = None
    ) -> BlobDownload:
        """Open a (ranged) download. Raises before any byte is streamed if the blob is missing,
        archived, or (when ``etag`` is given) was changed since it was recorded."""
        blob = self._container.get_blob_client(name)
        kwargs: dict[str, Any] = {"max_concurrency": 1}
        if etag is not None:
            from azure.core import MatchConditions

            kwargs["etag"] = etag
            kwargs["match_condition"] = MatchConditions.IfNotModified
        with translate_storage_errors():
            # The SDK wants an offset (even 0) whenever a length is given.
            start = offset if length is not None else (offset or None)
            downloader = await blob.download_blob(offset=start, length=length, **kwargs)
        self.counters.read_requests += 1
        return BlobDownload(downloader, self.counters)

    async def read_bytes(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        download = await self.open_download(name, offset=offset, length=length)
        return await download.read_all()

    async def get_properties(self, name: str) -> BlobInfo:
        blob = self._container.get_blob_client(name)
        with translate_storage_errors():
            props = await blob.get_blob_properties()
        return BlobInfo(
            name=name,
            size=int(props.size),
            etag=str(props.etag),
            tier=str(props.blob_tier) if props.blob_tier else None,
            last_modified=props.last_modified,
            archive_status=props.archive_status,
        )

    async def list_blobs(self, prefix: str) -> AsyncIterator[BlobInfo]:
        with translate_storage_errors():
            async for props in self._container.list_blobs(name_starts_with=prefix):
                yield BlobInfo(
                    name=str(props.name),
                    size=int(props.size),
                    etag=str(props.etag),
                    tier=str(props.blob_tier) if props.blob_tier else None,
                    last_modified=props.last_modified,
                    archive_status=props.archive_status,
                )

    # --- change ----------------------------------------------------------------------------------
    async def delete(self, name: str) -> None:
        """Delete a blob; succeed if it is already gone."""
        blob = self._container.get_blob_client(name)
        with translate_storage_errors():
            try:
                await blob.delete_blob()
            except ResourceNotFoundError as e:
                if _error_code(e) == "ContainerNotFound":
                    raise
                return

    async def set_tier(self, name: str, tier: str) -> None:
        blob = self._container.get_blob_client(name)
        with translate_storage_errors():
            await blob.set_standard_blob_tier(StandardBlobTier(tier))


def _as_datetime(result: dict[str, Any]) -> datetime | None:
    value = result.get("last_modified")
    return value if isinstance(value, datetime) else None


def _error_code(e: AzureError) -> str:
    code = getattr(e, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    response = getattr(e, "response", None)
    header = response.headers.get("x-ms-error-code") if response is not None else None
    return str(header or "")


@contextlib.contextmanager
def translate_storage_errors() -> Iterator[None]:
    """Turn Azure SDK exceptions raised inside the block into ``dicomlake.errors`` types."""
    try:
        yield
    except AzureError as e:
        _raise_translated(e)
    except (TimeoutError, OSError) as e:
        raise StorageUnavailableError(f"Storage did not answer in time ({type(e).__name__}).") from e


def _raise_translated(e: AzureError) -> NoReturn:
    code = _error_code(e)
    status = getattr(e, "status_code", None)
    if isinstance(e, ResourceNotFoundError):
        if code == "ContainerNotFound":
            raise ContainerNotFoundError(
                "The storage container does not exist.", code="StorageContainerNotFound"
            ) from e
        raise BlobNotFoundError("The file is not in storage.") from e
    if isinstance(e, ClientAuthenticationError) and status is None:
        raise StorageAccessDeniedError(
            "Could not obtain a Microsoft Entra token for storage: " + _short(e), code="StorageCredentialUnavailable"
        ) from e
    if status in (401, 403) or isinstance(e, ClientAuthenticationError):
        raise StorageAccessDeniedError(
            f"Storage refused access ({code or status}). With a managed identity, grant it the role "
            "Storage Blob Data Contributor on the container; with a connection string, check the account key.",
        ) from e
    if isinstance(e, ServiceRequestError | ServiceResponseError):
        raise StorageUnavailableError("Storage could not be reached: " + _short(e)) from e
    if isinstance(e, HttpResponseError):
        if code == "BlobArchived" or (status == 409 and "archive" in str(e).lower()):
            raise BlobArchivedError(
                "The file is in the archive access tier and must be rehydrated to hot, cool or cold first."
            ) from e
        if code == "ConditionNotMet" or status == 412:
            raise BlobChangedError("The file was modified in storage after the service recorded it.") from e
        if status is not None and (status >= 500 or status == 429):
            raise StorageUnavailableError(f"Storage is unavailable ({code or status}).") from e
        raise DependencyFailedError(f"Storage refused the request ({code or status}).", code="StorageFailed") from e
    raise StorageUnavailableError("Storage request failed: " + _short(e)) from e


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:300]
