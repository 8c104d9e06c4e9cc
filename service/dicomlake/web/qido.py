"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances, at the root, in a study or in a
series, under ``/v2`` and ``/v2/partitions/{partition}``. Answers ``application/dicom+json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.compat import search_behaviour
from dicomlake.features.search import parse_query, run_search
from dicomlake.index.instances import InstanceIndex
from dicomlake.index.search import Level, SearchIndex, orderable
from dicomlake.web.deps import deps
from dicomlake.web.json import dicom_json_response
from dicomlake.web.partitions import base_path, partition_key
from dicomlake.web.uids import optional_path_uid


async def _search(request: Request, level: Level) -> Response:
    d = deps(request)
    study = optional_path_uid(request, "study")
    series = optional_path_uid(request, "series")
    rules = search_behaviour(d.settings.compatibility, d.settings.qido_max_limit)
    search_index = SearchIndex(d.pool)
    key = await partition_key(request, InstanceIndex(d.pool), create=False)
    extended = await search_index.extended_tags()
    query = parse_query(
        request.query_params.multi_items(),
        level=level,
        study_uid=study,
        series_uid=series,
        behaviour=rules,
        orderable=orderable(level),
        extended=extended,
    )
    outcome = await run_search(search_index, key, query, rules, base_path(request))
    headers: dict[str, str] = {}
    host = request.url.netloc or "dicomlake"
    warnings = list(outcome.warnings)
    if outcome.truncated:
        warnings.append(
            f"The number of results exceeded the limit; request the next page with offset={query.offset + query.limit}"
        )
    if warnings:
        headers["Warning"] = ", ".join(f'299 {host} "{w}"' for w in warnings)
    if outcome.erroneous_tags:
        headers["erroneous-dicom-attributes"] = ",".join(f"{t:08X}" for t in outcome.erroneous_tags)
    if not outcome.results and rules.qido_empty_is_no_content:
        return Response(status_code=204, headers=headers)
    return dicom_json_response(outcome.results, headers=headers)


async def search_studies(request: Request) -> Response:
    return await _search(request, "study")


async def search_series(request: Request) -> Response:
    return await _search(request, "series")


async def search_instances(request: Request) -> Response:
    return await _search(request, "instance")
