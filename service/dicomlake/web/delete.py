"""DELETE /studies/{study}[/series/{series}[/instances/{instance}]]: 204, 404 when nothing matches."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.features.delete import delete_instances
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps
from dicomlake.web.partitions import partition_key
from dicomlake.web.uids import path_scope


async def delete(request: Request) -> Response:
    d = deps(request)
    scope = path_scope(request)
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    await delete_instances(index, key, scope.study, scope.series, scope.sop)
    return Response(status_code=204)
