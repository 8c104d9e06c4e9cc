"""The one exception tree of the service.

::

    DicomLakeError
    ├── ConfigurationError                 start-up: settings missing or invalid
    └── DicomWebError                      anything that becomes an HTTP answer (status_code, code)
        ├── BadRequestError                400
        │   ├── InvalidInstanceError       400, FailureReason 0xA900 (one instance failed validation)
        │   └── InvalidQueryError          400 (QIDO parameter, frame list, UID in the path, ...)
        ├── NotFoundError                  404
        │   └── BlobNotFoundError          404, a blob the caller asked for is missing
        ├── NotAcceptableError             406
        ├── RequestTimeoutError            408, the request body arrived too slowly
        ├── ConflictError                  409
        ├── PayloadTooLargeError           413
        ├── UriTooLongError                414
        ├── HeadersTooLargeError           431
        ├── UnsupportedMediaTypeError      415
        ├── DependencyFailedError          424, storage answered but refuses (role, container, archive tier)
        │   ├── StorageAccessDeniedError
        │   ├── ContainerNotFoundError
        │   ├── BlobArchivedError
        │   └── BlobChangedError           the file was modified or removed behind the service's back
        └── DependencyUnavailableError     503 + Retry-After, storage or database unreachable
            ├── StorageUnavailableError
            └── DatabaseUnavailableError

Only the adapters (``storage/``, ``index/``, ``dicom/``) translate SDK and driver exceptions into these,
always with ``raise ... from e``. The web layer maps them to responses in one handler.
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "BlobArchivedError",
    "BlobChangedError",
    "BlobNotFoundError",
    "ConfigurationError",
    "ConflictError",
    "ContainerNotFoundError",
    "DatabaseUnavailableError",
    "DependencyFailedError",
    "DependencyUnavailableError",
    "DicomLakeError",
    "DicomWebError",
    "HeadersTooLargeError",
    "InvalidInstanceError",
    "InvalidQueryError",
    "NotAcceptableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "StorageAccessDeniedError",
    "StorageUnavailableError",
    "UnsupportedMediaTypeError",
    "UriTooLongError",
]


class DicomLakeError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigurationError(DicomLakeError):
    """The configuration is missing or invalid; the message is meant for the operator."""


class DicomWebError(DicomLakeError):
    """An error with an HTTP status. ``code`` is a stable, machine-readable name for clients and logs."""

    status_code: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, message={self.message!r})"


class BadRequestError(DicomWebError):
    status_code = 400
    code = "BadRequest"


class InvalidInstanceError(BadRequestError):
    """A DICOM instance failed validation; STOW reports it per instance with ``failure_reason``."""

    code = "InvalidInstance"
    failure_reason: int = 0xA900


class InvalidQueryError(BadRequestError):
    code = "InvalidQuery"


class NotFoundError(DicomWebError):
    status_code = 404
    code = "NotFound"


class BlobNotFoundError(NotFoundError):
    code = "BlobNotFound"


class NotAcceptableError(DicomWebError):
    status_code = 406
    code = "NotAcceptable"


class ConflictError(DicomWebError):
    status_code = 409
    code = "Conflict"


class PayloadTooLargeError(DicomWebError):
    status_code = 413
    code = "PayloadTooLarge"


class RequestTimeoutError(DicomWebError):
    status_code = 408
    code = "RequestTimeout"


class UriTooLongError(DicomWebError):
    status_code = 414
    code = "UriTooLong"


class HeadersTooLargeError(DicomWebError):
    status_code = 431
    code = "RequestHeaderFieldsTooLarge"


class UnsupportedMediaTypeError(DicomWebError):
    status_code = 415
    code = "UnsupportedMediaType"


class DependencyFailedError(DicomWebError):
    """Storage answered, but refuses what we need (HTTP 424, as the Azure DICOM service does)."""

    status_code = 424
    code = "StorageFailed"


class StorageAccessDeniedError(DependencyFailedError):
    code = "StorageAccessDenied"


class ContainerNotFoundError(DependencyFailedError):
    code = "StorageContainerNotFound"


class BlobArchivedError(DependencyFailedError):
    code = "BlobArchived"


class BlobChangedError(DependencyFailedError):
    code = "BlobChanged"


class DependencyUnavailableError(DicomWebError):
    """A dependency cannot be reached right now; clients should retry after ``retry_after`` seconds."""

    status_code = 503
    code = "ServiceUnavailable"
    retry_after: int = 5


class StorageUnavailableError(DependencyUnavailableError):
    code = "StorageUnavailable"


class DatabaseUnavailableError(DependencyUnavailableError):
    code = "DatabaseUnavailable"
