"""``GET /metrics``: Prometheus text exposition (version 0.0.4) of the deletion queue, read from
PostgreSQL, so every replica reports the same shared backlog."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.index.deletions import EXHAUSTED_AFTER_ATTEMPTS, deletion_queue_stats
from dicomlake.index.instances import _DB_DOWN, _db_errors
from dicomlake.web.deps import deps

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(name: str, help_text: str, value: float) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {value:g}\n"


async def metrics(request: Request) -> Response:
    try:
        stats = await deletion_queue_stats(deps(request).pool)
    except _DB_DOWN as e:
        raise _db_errors(e) from e
    body = "".join(
        [
            _gauge("dicomlake_deletion_queue_backlog", "Files waiting to be deleted from the lake.", stats.backlog),
            _gauge("dicomlake_deletion_queue_due", "Queued file deletions due for an attempt now.", stats.due),
            _gauge(
                "dicomlake_deletion_queue_exhausted",
                f"Queued file deletions that failed {EXHAUSTED_AFTER_ATTEMPTS} times or more.",
                stats.exhausted,
            ),
            _gauge(
                "dicomlake_deletion_queue_oldest_age_seconds",
                "Age of the oldest queued file deletion (0 when the queue is empty).",
                round(stats.oldest_age_seconds, 3),
            ),
        ]
    )
    return Response(body, media_type=CONTENT_TYPE)
