"""Smoke subset of the fault scenarios, run by ``make test``: one kill per crash point and one random
kill during ingest, a short storage refusal; the invariant checker after each."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults import invariants
from tests.faults.harness import Stack
from tests.faults.scenarios import kill_during_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_kill_during_ingest(stack: Stack, figures: Callable[..., None]) -> None:
    points = ("after-blob-write", "before-commit")
    result = await kill_during_ingest(stack, per_point=1, random_kills=1, points=points)
    assert result.kills == len(points) + 1
    report = await invariants.check(stack, stack.services[-1].base_url)
    assert report.acknowledged > 0
    assert report.lost == 0
    assert report.orphans_after_janitor == 0
    figures(scenario="kill -9 during ingest (smoke)", kills=result.kills, **report.as_dict())
