"""UIDs from the request path."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from dicomlake.dicom.uids import is_valid_uid
from dicomlake.errors import BadRequestError, NotFoundError

_NAMES = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}


def path_uid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not is_valid_uid(value):
        raise BadRequestError(f"The {_NAMES[name]} in the path is not a valid UID.", code="InvalidUid")
    return value


def optional_path_uid(request: Request, name: str) -> str | None:
    return path_uid(request, name) if name in request.path_params else None


@dataclass(frozen=True, slots=True)
class PathScope:
    """The study, series and instance a study/series/instance route names (the last two optional)."""

    study: str
    series: str | None = None
    sop: str | None = None

    @property
    def level(self) -> str:
        return "instance" if self.sop else "series" if self.series else "study"

    def not_found(self) -> NotFoundError:
        return NotFoundError(f"The requested {self.level} was not found.", code=f"{self.level.capitalize()}NotFound")


def path_scope(request: Request) -> PathScope:
    """Validated UIDs of the route (400 for an invalid one)."""
    return PathScope(
        path_uid(request, "study"), optional_path_uid(request, "series"), optional_path_uid(request, "instance")
    )
