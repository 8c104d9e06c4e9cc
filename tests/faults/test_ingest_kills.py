"""kill -9 during ingest: 10 kills at each of the four crash points of the store path and 10 at random
moments of concurrent uploads (50 in all); the invariant checker afterwards."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest

from tests.faults import invariants
from tests.faults.harness import Stack
from tests.faults.scenarios import CRASH_POINTS, kill_during_ingest

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def test_fifty_kills_during_ingest(stack: Stack, figures: Callable[..., None]) -> None:
    result = await kill_during_ingest(stack, per_point=10, random_kills=10)
    assert result.kills == 10 * len(CRASH_POINTS) + 10
    report = await invariants.check(stack, stack.services[-1].base_url)
    assert report.acknowledged > 0
    assert report.lost == 0
    assert report.orphans_after_janitor == 0
    figures(
        scenario="kill -9 during ingest",
        kills=result.kills,
        by_point=result.by_point,
        restart_to_ready_seconds_median=round(statistics.median(result.recover_seconds), 1),
        restart_to_ready_seconds_max=round(max(result.recover_seconds), 1),
        **report.as_dict(),
    )
