"""Partition keys are cached per replica, but only for partitions that exist: a partition another
replica creates is visible at once."""

from __future__ import annotations

import pytest

from dicomlake.app import create_app
from dicomlake.config import Settings
from tests.factories import make_dataset, multipart, to_bytes
from tests.helpers.asgi import running_app

pytestmark = pytest.mark.integration


async def test_partition_created_by_another_replica_is_seen(settings: Settings) -> None:
    ds = make_dataset()
    url = f"/v2/partitions/site-b/studies/{ds.StudyInstanceUID}/metadata"
    async with running_app(create_app(settings)) as replica_a, running_app(create_app(settings)) as replica_b:
        missing = await replica_a.get(url)
        assert missing.status_code == 404
        assert missing.json()["code"] == "PartitionNotFound"
        body, content_type = multipart([to_bytes(ds)])
        stored = await replica_b.post(
            "/v2/partitions/site-b/studies", content=body, headers={"Content-Type": content_type}
        )
        assert stored.status_code == 200
        assert (await replica_a.get(url)).status_code == 200  # the earlier miss was not cached
        assert (await replica_a.get(url)).status_code == 200  # now served with the cached key
