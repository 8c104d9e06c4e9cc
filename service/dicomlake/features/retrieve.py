"""WADO-RS orchestration: everything that can fail is checked before the response starts.

The index says which instances exist (committed only) and their blob names, sizes and ETags. The first
blob is opened, with an ETag condition, before any byte is sent, so a missing, changed or archived file
becomes a clean 424; a failure on a later instance, once streaming has begun, can only abort the
connection (the declared Content-Length then tells the client the body is incomplete).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from dicomlake.errors import BlobChangedError, BlobNotFoundError, DicomWebError
from dicomlake.index.instances import StoredInstance
from dicomlake.storage.blob_store import AzureBlobStore, BlobDownload
from dicomlake.web.multipart import closing_delimiter, part_header

logger = logging.getLogger(__name__)


async def open_instance(
    blobs: AzureBlobStore, instance: StoredInstance, *, offset: int = 0, length: int | None = None
) -> BlobDownload:
    try:
        return await blobs.open_download(instance.blob_name, offset=offset, length=length, etag=instance.blob_etag)
    except BlobNotFoundError as e:
        raise BlobChangedError(
            f"The file of instance {instance.sop_uid} is missing from storage (removed outside the service)."
        ) from e
    except DicomWebError as e:
        e.message = f"Instance {instance.sop_uid}: {e.message}"
        raise


def multipart_length(instances: list[StoredInstance], boundary: str, content_types: list[str]) -> int:
    total = len(closing_delimiter(boundary))
    for instance, content_type in zip(instances, content_types, strict=True):
        total += len(part_header(boundary, content_type)) + instance.size + 2
    return total


async def stream_multipart(
    blobs: AzureBlobStore,
    instances: list[StoredInstance],
    first: BlobDownload,
    boundary: str,
    content_types: list[str],
) -> AsyncIterator[bytes]:
    download: BlobDownload | None = first
    for i, instance in enumerate(instances):
        if download is None:
            download = await open_instance(blobs, instance)
        yield part_header(boundary, content_types[i])
        async for chunk in download.chunks():
            yield chunk
        yield b"\r\n"
        download = None
    yield closing_delimiter(boundary)


async def stream_single(download: BlobDownload) -> AsyncIterator[bytes]:
    async for chunk in download.chunks():
        yield chunk
