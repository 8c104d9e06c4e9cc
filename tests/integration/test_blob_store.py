from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from dicomlake.errors import (
    BlobArchivedError,
    BlobChangedError,
    BlobNotFoundError,
    ContainerNotFoundError,
    StorageAccessDeniedError,
    StorageUnavailableError,
)
from dicomlake.storage.blob_store import AzureBlobStore

pytestmark = pytest.mark.integration


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_streaming_upload_in_blocks_and_ranged_reads(blob_store: AzureBlobStore) -> None:
    blob_store.block_size = 64 * 1024  # many blocks, several in flight
    data = os.urandom(1_000_003)
    info = await blob_store.upload_stream("a/b/c.dcm", chunked(data, 10_000), content_type="application/dicom")
    assert info.size == len(data)
    assert await blob_store.read_bytes("a/b/c.dcm") == data
    assert await blob_store.read_bytes("a/b/c.dcm", offset=123_456, length=1000) == data[123_456:124_456]
    props = await blob_store.get_properties("a/b/c.dcm")
    assert props.size == len(data)
    assert props.etag == info.etag


async def test_empty_upload_creates_empty_blob(blob_store: AzureBlobStore) -> None:
    await blob_store.upload_stream("empty", chunked(b"", 1))
    assert await blob_store.read_bytes("empty") == b""


async def test_failed_source_stream_commits_nothing(blob_store: AzureBlobStore) -> None:
    blob_store.block_size = 1024

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 5000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await blob_store.upload_stream("broken", broken())
    with pytest.raises(BlobNotFoundError):
        await blob_store.get_properties("broken")


async def test_list_delete_idempotent(blob_store: AzureBlobStore) -> None:
    for name in ("p/1", "p/2", "q/1"):
        await blob_store.upload_bytes(name, b"x")
    assert sorted([b.name async for b in blob_store.list_blobs("p/")]) == ["p/1", "p/2"]
    await blob_store.delete("p/1")
    await blob_store.delete("p/1")  # already gone: still fine
    assert [b.name async for b in blob_store.list_blobs("p/")] == ["p/2"]


async def test_missing_blob_and_container_are_told_apart(azurite: str, blob_store: AzureBlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        await blob_store.open_download("nope")
    async with AzureBlobStore.from_connection_string(azurite, "no-such-container") as other:
        with pytest.raises(ContainerNotFoundError):
            await other.upload_bytes("x", b"1")
        with pytest.raises(ContainerNotFoundError):
            await other.delete("x")


async def test_wrong_key_is_access_denied(azurite: str, container: str, blob_store: AzureBlobStore) -> None:
    bad = azurite.replace("AccountKey=Eby8", "AccountKey=AAAA")
    async with AzureBlobStore.from_connection_string(bad, container) as other:
        with pytest.raises(StorageAccessDeniedError) as info:
            await other.upload_bytes("x", b"1")
    assert info.value.status_code == 424


async def test_etag_condition_detects_change_behind_our_back(blob_store: AzureBlobStore) -> None:
    first = await blob_store.upload_bytes("f", b"one")
    await blob_store.upload_bytes("f", b"two")
    with pytest.raises(BlobChangedError):
        await blob_store.open_download("f", etag=first.etag)


async def test_tiers(blob_store: AzureBlobStore) -> None:
    await blob_store.upload_bytes("t", b"data")
    for tier in ("Cool", "Cold", "Hot"):
        await blob_store.set_tier("t", tier)
        assert (await blob_store.get_properties("t")).tier == tier
        assert await blob_store.read_bytes("t") == b"data"
    await blob_store.set_tier("t", "Archive")
    assert (await blob_store.get_properties("t")).tier == "Archive"
    with pytest.raises(BlobArchivedError):
        await blob_store.read_bytes("t")


async def test_unreachable_storage_fails_fast() -> None:
    import time

    from dicomlake.devstack.ports import free_port

    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=AAAA;"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )
    started = time.monotonic()
    async with AzureBlobStore.from_connection_string(conn, "c") as store:
        with pytest.raises(StorageUnavailableError):
            await store.upload_bytes("x", b"1")
    assert time.monotonic() - started < 15  # seconds, not the SDK default of minutes


async def test_prefetching_download_reports_mid_stream_failures(blob_store: AzureBlobStore) -> None:
    data = os.urandom(13 * 1024 * 1024)  # several 4 MiB chunks
    info = await blob_store.upload_stream("big", chunked(data, 1024 * 1024))
    download = await blob_store.open_download("big", etag=info.etag)
    stream = download.chunks()
    first = await anext(stream)
    assert data.startswith(first)
    await blob_store.upload_bytes("big", b"replaced behind the reader's back")
    with pytest.raises((BlobChangedError, BlobNotFoundError)):
        async for _ in stream:
            pass


async def test_prefetching_download_can_be_abandoned(blob_store: AzureBlobStore) -> None:
    data = os.urandom(9 * 1024 * 1024)
    await blob_store.upload_stream("big2", chunked(data, 1024 * 1024))
    download = await blob_store.open_download("big2")
    stream = download.chunks()
    await anext(stream)
    await stream.aclose()  # the producer task is cancelled, nothing leaks
    assert await blob_store.read_bytes("big2") == data
