"""Committed instances named by a study/series/instance route, or the route's 404."""

from __future__ import annotations

from starlette.requests import Request

from dicomlake.index.instances import InstanceIndex, StoredInstance
from dicomlake.web.deps import deps
from dicomlake.web.partitions import partition_key
from dicomlake.web.uids import path_scope


async def find_instances(request: Request) -> list[StoredInstance]:
    """Every committed instance in the route's study, series or instance (404 when none)."""
    scope = path_scope(request)
    index = InstanceIndex(deps(request).pool)
    key = await partition_key(request, index, create=False)
    instances = await index.find(key, scope.study, scope.series, scope.sop)
    if not instances:
        raise scope.not_found()
    return instances


async def find_instance(request: Request) -> StoredInstance:
    """The one instance an instance-level route names."""
    return (await find_instances(request))[0]
