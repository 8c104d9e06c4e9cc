"""DELETE /studies/{study}[/series/{series}[/instances/{instance}]]: 204, 404 when nothing matches."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.features.delete import delete_instances
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps
from dicomlake.web.partitions import partition_key
from dicomlake.web.uids import optional_path_uid, path_uid


async def delete(request: Request) -> Response:
    d = deps(request)
    study = path_uid(request, "study")
    series = optional_path_uid(request, "series")
    sop = optional_path_uid(request, "instance")
    index = InstanceIndex(d.pool)
    key = await partition_key(request, index, create=False)
    await delete_instances(index, key, study, series, sop)
    return Response(status_code=204)
