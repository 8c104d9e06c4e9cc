"""STOW-RS (PS3.18 §10.5): POST stores new instances, PUT upserts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.compat import behaviour
from dicomlake.errors import BadRequestError, NotAcceptableError
from dicomlake.features.store import InstanceOutcome, StoreContext, StoreService
from dicomlake.index.instances import InstanceIndex
from dicomlake.web.deps import deps
from dicomlake.web.json import dicom_json_response
from dicomlake.web.limits import part_limits
from dicomlake.web.media import accepts_dicom_json, parse_accept, parse_media_type
from dicomlake.web.multipart import PartLimits, ReceivedPart, iter_related_parts, related_boundary, spool_single_part
from dicomlake.web.partitions import base_path, partition_key, partition_name
from dicomlake.web.uids import optional_path_uid

WARNING_DATA_SET_DOES_NOT_MATCH = 0xB007  # 45063


async def store(request: Request) -> Response:
    d = deps(request)
    if not accepts_dicom_json(parse_accept(request.headers.get("accept"))):
        raise NotAcceptableError("STOW-RS answers in application/dicom+json; the Accept header excludes it.")
    content_type = request.headers.get("content-type")
    study = optional_path_uid(request, "study")
    limits = part_limits(d.settings.limits)
    if content_type and parse_media_type(content_type).type == "application/dicom":
        parts: AsyncIterator[ReceivedPart] = _single(request, limits)
    else:
        boundary, _ = related_boundary(content_type)  # 415 for any other type, 400 without a boundary
        parts = iter_related_parts(request.stream(), boundary, limits=limits)

    index = InstanceIndex(d.pool)
    rules = behaviour(d.settings.compatibility)
    service = StoreService(index, d.blobs, d.layout, rules)
    ctx = StoreContext(
        partition=partition_name(request),
        partition_key=await partition_key(request, index, create=True),
        study_in_path=study,
        upsert=request.method == "PUT",
    )
    outcomes: list[InstanceOutcome] = []
    async for part in parts:
        try:
            outcomes.append(await service.store(part, ctx))
        finally:
            part.close()
    if not outcomes:
        if rules.empty_stow_is_no_content:
            return Response(status_code=204)
        raise BadRequestError("The request contains no DICOM instances.", code="EmptyRequest")
    return _response(outcomes, base_path(request), study)


async def _single(request: Request, limits: PartLimits) -> AsyncIterator[ReceivedPart]:
    yield await spool_single_part(request.stream(), limits=limits)


def _ui(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _response(outcomes: list[InstanceOutcome], base: str, study_in_path: str | None) -> Response:
    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    body: dict[str, Any] = {}
    studies = {o.study_instance_uid for o in stored}
    study_url = study_in_path or (next(iter(studies)) if len(studies) == 1 else None)
    body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study_url}"]} if stored and study_url else {"vr": "UR"}
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": _ui(o.sop_class_uid),
                    "00081155": _ui(o.sop_instance_uid),
                    "00081197": {"vr": "US", "Value": [o.failure_reason]},
                    **({"00741048": _comments(o.error)} if o.error else {}),
                }
                for o in failed
            ],
        }
    if stored:
        items = []
        for o in stored:
            item: dict[str, Any] = {
                "00081150": _ui(o.sop_class_uid),
                "00081155": _ui(o.sop_instance_uid),
                "00081190": {
                    "vr": "UR",
                    "Value": [
                        f"{base}/studies/{o.study_instance_uid}/series/{o.series_instance_uid}"
                        f"/instances/{o.sop_instance_uid}"
                    ],
                },
            }
            if o.warnings:
                item["00081196"] = {"vr": "US", "Value": [WARNING_DATA_SET_DOES_NOT_MATCH]}
                item["00741048"] = _comments("; ".join(o.warnings))
            items.append(dict(sorted(item.items())))
        body["00081199"] = {"vr": "SQ", "Value": items}
    warnings = any(o.warnings for o in stored)
    status = 200 if not failed and not warnings else (202 if stored else 409)
    return dicom_json_response(dict(sorted(body.items())), status_code=status)


def _comments(text: str) -> dict[str, Any]:
    """FailedAttributesSequence (0074,1048) of ErrorComment (0000,0902) items, as Azure's service does.

    ErrorComment is LO (at most 64 characters): a longer explanation is split at word boundaries into
    several items, so clients that validate VRs accept it and nothing is lost."""
    return {"vr": "SQ", "Value": [{"00000902": {"vr": "LO", "Value": [piece]}} for piece in _split_lo(text)]}


def _split_lo(text: str, width: int = 64) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, break_long_words=True)[:16] or [""]
