"""Delete (study, series or instance): one index transaction, blobs removed afterwards.

The index transaction removes the committed rows, queues their blobs in ``deletion_queue`` and appends
one change-feed ``delete`` entry per instance (under the change-feed lock, so sequences stay in commit
order). From its commit on, retrieve, search and the change feed no longer show the instances. The
janitor (``jobs/janitor.py``) deletes the blobs; a crash at any point after the commit leaves the
queue rows to be drained by any replica, so no delete is lost and no orphan file survives for long.

Stores in flight (pending rows) are left alone: one that commits after the delete makes its instance
exist again, as a later ``create`` in the change feed.
"""

from __future__ import annotations

import logging

from dicomlake.crashpoints import crash_point
from dicomlake.errors import NotFoundError
from dicomlake.index.instances import InstanceIndex

logger = logging.getLogger(__name__)


def _level(series_uid: str | None, sop_uid: str | None) -> str:
    return "instance" if sop_uid else "series" if series_uid else "study"


async def delete_instances(
    index: InstanceIndex,
    partition_key: int,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> int:
    """Delete what the UIDs name; raise NotFoundError when no committed instance matches."""
    level = _level(series_uid, sop_uid)
    deleted = await index.delete(partition_key, study_uid, series_uid, sop_uid)
    if deleted == 0:
        raise NotFoundError(f"The requested {level} was not found.", code=f"{level.capitalize()}NotFound")
    logger.info("instances deleted", extra={"level": level, "instances": deleted})
    crash_point("after-delete-commit")
    return deleted
