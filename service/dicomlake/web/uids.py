"""UIDs from the request path."""

from __future__ import annotations

from starlette.requests import Request

from dicomlake.dicom.uids import is_valid_uid
from dicomlake.errors import BadRequestError

_NAMES = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}


def path_uid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not is_valid_uid(value):
        raise BadRequestError(f"The {_NAMES[name]} in the path is not a valid UID.", code="InvalidUid")
    return value


def optional_path_uid(request: Request, name: str) -> str | None:
    return path_uid(request, name) if name in request.path_params else None
