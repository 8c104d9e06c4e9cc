"""Data partitions in the path: ``/v2/partitions/{partition}/...``; the plain routes use the default."""

from __future__ import annotations

import re

from starlette.requests import Request

from dicomlake.config import DEFAULT_PARTITION
from dicomlake.errors import BadRequestError, NotFoundError
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def partition_name(request: Request) -> str:
    name = request.path_params.get("partition")
    if name is None:
        return DEFAULT_PARTITION
    if not _NAME_RE.match(name):
        raise BadRequestError(
            "A partition name is 1-64 characters of letters, digits, '.', '_' and '-'.", code="InvalidPartitionName"
        )
    return str(name)


async def partition_key(request: Request, index: InstanceIndex, *, create: bool) -> int:
    name = partition_name(request)
    known = deps(request).partition_keys
    key = known.get(name)
    if key is None:
        key = await index.partition_key(name, create=create)
        if key is None:
            raise NotFoundError(f"Specified PartitionName {name} does not exist.", code="PartitionNotFound")
        known[name] = key
    return key


def base_path(request: Request) -> str:
    """Absolute URL prefix of this request's partition, e.g. ``http://host/v2`` or ``.../v2/partitions/p``."""
    root = str(request.base_url).rstrip("/")
    name = request.path_params.get("partition")
    return f"{root}/v2/partitions/{name}" if name is not None else f"{root}/v2"
