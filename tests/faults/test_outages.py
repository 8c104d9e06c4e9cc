"""Dependency outages of 30 s (``DICOMLAKE_FAULT_OUTAGE_SECONDS`` shortens them while developing):
storage refusing connections, storage frozen (SIGSTOP), database refusing connections, database
frozen (SIGSTOP). During each: 503 with Retry-After within seconds, health names the cause,
``/health/live`` stays 200; afterwards the same process recovers by itself; invariants hold."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.faults import invariants
from tests.faults.harness import Stack
from tests.faults.scenarios import outage

pytestmark = [pytest.mark.faults, pytest.mark.e2e]
SECONDS = float(os.environ.get("DICOMLAKE_FAULT_OUTAGE_SECONDS", "30"))
#: The longest a request may take to fail during an outage.
BOUND_SECONDS = 15.0


def _modes(stack: Stack) -> dict[str, tuple[Callable[[], None], Callable[[], None], str]]:
    s = stack.servers
    return {
        "storage-refused": (lambda: s.blob_proxy.set("reset"), lambda: s.blob_proxy.set("pass"), "storage"),
        "storage-frozen": (s.azurite.pause, s.azurite.resume, "storage"),
        "database-refused": (lambda: s.pg_proxy.set("reset"), lambda: s.pg_proxy.set("pass"), "database"),
        "database-frozen": (s.freeze_postgres, s.thaw_postgres, "database"),
    }


@pytest.mark.parametrize("mode", ["storage-refused", "storage-frozen", "database-refused", "database-frozen"])
async def test_outage(stack: Stack, mode: str, figures: Callable[..., None]) -> None:
    start, end, component = _modes(stack)[mode]
    stack.start_service()
    result = await outage(stack, start=start, end=end, component=component, seconds=SECONDS)
    figures(
        scenario=f"outage {mode} {SECONDS:.0f} s",
        requests=result.requests,
        answered_503=result.answered_503,
        statuses=result.statuses,
        codes=sorted(result.codes),
        max_latency_seconds=round(result.max_latency_seconds, 1),
        health_named_cause=result.health_named_cause,
        recover_seconds=result.recover_seconds,
    )
    assert result.answered_503 > 0, result
    assert set(result.statuses) <= {200, 503}, result.statuses
    assert result.max_latency_seconds <= BOUND_SECONDS, result
    assert result.health_named_cause
    assert result.live_always_ok
    assert result.recover_seconds is not None
    report = await invariants.check(stack, stack.services[-1].base_url)
    assert report.lost == 0
    figures(scenario=f"outage {mode} invariants", **report.as_dict())
