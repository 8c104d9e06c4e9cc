"""The dependencies every request handler may use, built once in the composition root (``app.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from dicomlake.config import Settings
from dicomlake.health import HealthMonitor
from dicomlake.jobs.lake_probe import LakeProbe
from dicomlake.jobs.rebuild import RebuildWorker
from dicomlake.jobs.reindex import ReindexWorker
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    blobs: AzureBlobStore
    layout: LakeLayout
    probe: LakeProbe
    health: HealthMonitor
    #: This replica's reindex worker (None with DICOM_OPERATIONS_WORKER=false); nudged when tags are added.
    reindex: ReindexWorker | None = None
    #: This replica's worker for rebuilds from the lake (None with DICOM_OPERATIONS_WORKER=false).
    rebuild: RebuildWorker | None = None
    #: Partition name -> key, for partitions known to exist. A key never changes once assigned (there is
    #: no partition delete), so this saves one database round trip per request; unknown names are always
    #: looked up, since another replica may create the partition at any moment.
    partition_keys: dict[str, int] = field(default_factory=dict)
