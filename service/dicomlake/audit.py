"""The audit trail: one JSON record per request on its own logger and stream, separate from the
application log (``DICOM_AUDIT_LOG``: ``stderr`` by default, ``stdout`` or a file).

A record says who (Entra object id, client application, tenant, roles), from where (client IP), did
what (action, method, route template), to which data (partition, study/series/instance UIDs from the
path, or the studies a STOW request stored) and how it ended (status, outcome, failure codes, duration),
with the request id shared with the application log. It never holds patient names or IDs, query
strings or tokens. The format is described in docs/security.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

AUDIT_LOGGER = "dicomlake.audit"
audit_logger = logging.getLogger(AUDIT_LOGGER)


class _AuditFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = getattr(record, "audit", None)
        if not isinstance(entry, dict):
            entry = {"type": "audit", "message": record.getMessage()}
        return orjson.dumps(entry, default=str).decode()


def setup_audit(destination: str) -> None:
    """Send audit records to ``destination`` (stderr, stdout or an absolute file path), never to the
    application log's handlers."""
    audit_logger.propagate = False
    audit_logger.setLevel(logging.INFO)
    for existing in list(audit_logger.handlers):
        if getattr(existing, "_dicomlake", False):
            audit_logger.removeHandler(existing)
            existing.close()
    handler: logging.Handler
    if destination == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    elif destination == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        from logging.handlers import WatchedFileHandler

        handler = WatchedFileHandler(destination, encoding="utf-8")
    handler.setFormatter(_AuditFormatter())
    setattr(handler, "_dicomlake", True)  # noqa: B010
    audit_logger.addHandler(handler)


@dataclass(slots=True)
class AuditEvent:
    """Filled in while a request is served; written once when it ends."""

    request_id: str | None
    method: str
    route: str
    action: str | None
    client_ip: str | None
    partition: str | None = None
    study: str | None = None
    series: str | None = None
    instance: str | None = None
    caller: dict[str, Any] | None = None
    auth_failure: str | None = None
    status: int = 0
    error_code: str | None = None
    failure_codes: list[int] = field(default_factory=list)
    stored_studies: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def outcome(self) -> str:
        if self.status in (401, 403):
            return "denied"
        if 200 <= self.status < 300 and not self.failure_codes:
            return "success"
        if 200 <= self.status < 300:
            return "partial"
        return "failure"

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "audit",
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "requestId": self.request_id,
            "action": self.action,
            "method": self.method,
            "route": self.route,
            "partition": self.partition,
            "studyInstanceUid": self.study,
            "seriesInstanceUid": self.series,
            "sopInstanceUid": self.instance,
            "caller": self.caller,
            "clientIp": self.client_ip,
            "status": self.status,
            "outcome": self.outcome(),
            "durationMs": round((time.perf_counter() - self.started) * 1000, 1),
        }
        if self.auth_failure:
            entry["authFailure"] = self.auth_failure
        if self.error_code:
            entry["errorCode"] = self.error_code
        if self.failure_codes:
            entry["failureCodes"] = self.failure_codes
        if self.stored_studies:
            entry["storedStudyInstanceUids"] = self.stored_studies
        return entry


def emit(event: AuditEvent) -> None:
    audit_logger.info("audit", extra={"audit": event.record()})
