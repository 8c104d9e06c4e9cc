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
#: The longest a request may take to fail during an outage: a store meets one storage read timeout (10 s)
#: on the upload and one on discarding its reservation...
BOUND_SECONDS = 25.0


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


async def test_role_revoked(stack: Stack, figures: Callable[..., None]) -> None:
    """Storage answers 403 (role assignment removed): 424 StorageAccessDenied, health names the role to
    grant, live stays 200; once the role is back the same process serves again."""
    s = stack.servers
    stack.start_service()
    result = await outage(
        stack,
        start=lambda: s.blob_proxy.set("http403"),
        end=lambda: s.blob_proxy.set("pass"),
        component="storage",
        seconds=min(SECONDS, 10),
        expect_status=424,
    )
    figures(
        scenario="storage role revoked (403)",
        requests=result.requests,
        answered_424=result.answered_503,
        statuses=result.statuses,
        codes=sorted(result.codes),
        max_latency_seconds=round(result.max_latency_seconds, 1),
        recover_seconds=result.recover_seconds,
    )
    assert result.codes == {"StorageAccessDenied"}
    assert set(result.statuses) <= {200, 424}, result.statuses
    assert result.health_named_cause
    assert result.live_always_ok
    assert result.recover_seconds is not None
    await invariants.check(stack, stack.services[-1].base_url)


async def test_archive_tier_blob(stack: Stack, figures: Callable[..., None]) -> None:
    """A file moved to the archive tier behind the service: 424 BlobArchived for it, everything else
    unaffected, invariants hold (the archived instance is still committed and its file still there)."""
    import httpx

    from tests.factories import instance_bytes, new_uid

    service = stack.start_service()
    async with httpx.AsyncClient(timeout=60) as client:
        r = await stack.stow(client, service.base_url, [instance_bytes(study=new_uid()) for _ in range(3)])
        assert r is not None
        assert r.status_code == 200
    sop = next(iter(stack.ledger.stored))
    partition, study, series, _ = stack.ledger.stored[sop]
    async with stack.blob_store() as blobs:
        names = [
            b.name async for b in blobs.list_blobs(f"AHDS/workspace/dicom/dicom/{partition}/{study}/{series}/{sop}_")
        ]
        await blobs.set_tier(names[0], "Archive")
    stack.ledger.archived.add(sop)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
        r = await client.get(f"/v2/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": "*/*"})
        assert r.status_code == 424
        assert r.json()["code"] == "BlobArchived"
    report = await invariants.check(stack, service.base_url)
    figures(scenario="archive-tier blob", **report.as_dict())
