"""Two replicas against the same PostgreSQL and storage: the same SOP stored concurrently through both
commits exactly once (x50); a replica killed during delete (after the index commit, and in the janitor
after a blob deletion) leaves the other to finish the work once; invariants after each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.factories import instance_bytes, new_uid
from tests.faults import invariants
from tests.faults.harness import Stack, wait_exit

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def test_same_sop_race_through_two_replicas(stack: Stack, figures: Callable[..., None]) -> None:
    a, b = stack.start_service(), stack.start_service()
    study, series = new_uid(), new_uid()
    outcomes: dict[tuple[int, int], int] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(50):
            data = instance_bytes(study=study, series=series, rows=128, columns=128)
            ra, rb = await asyncio.gather(
                stack.stow(client, a.base_url, [data]), stack.stow(client, b.base_url, [data])
            )
            assert ra is not None
            assert rb is not None
            pair = tuple(sorted((ra.status_code, rb.status_code)))
            outcomes[pair] = outcomes.get(pair, 0) + 1  # type: ignore[index]
            assert 200 in pair, pair  # at least one succeeds (the other: 200 idempotent, or 409 45071/45070)
    pool = await asyncpg.create_pool(stack.direct_dsn, min_size=1, max_size=1)
    try:
        per_sop = await pool.fetch("SELECT sop_uid, count(*) AS n FROM instances WHERE status = 2 GROUP BY sop_uid")
        creates = await pool.fetchval("SELECT count(*) FROM changefeed WHERE action = 'create'")
    finally:
        await pool.close()
    assert len(per_sop) == 50
    assert all(r["n"] == 1 for r in per_sop)
    assert creates == 50  # committed once: one change-feed entry each
    report = await invariants.check(stack, a.base_url)
    figures(
        scenario="same-SOP race x50, two replicas",
        outcomes={str(k): v for k, v in outcomes.items()},
        **report.as_dict(),
    )


@pytest.mark.parametrize("point", ["after-delete-commit", "janitor-after-blob-delete"])
async def test_kill_a_replica_during_delete(stack: Stack, point: str, figures: Callable[..., None]) -> None:
    survivor = stack.start_service()
    study = new_uid()
    async with httpx.AsyncClient(timeout=60) as client:
        parts = [instance_bytes(study=study, series=new_uid()) for _ in range(6)]
        r = await stack.stow(client, survivor.base_url, parts)
        assert r is not None
        assert r.status_code == 200
        doomed = stack.start_service(crash_point=point)
        sops = list(stack.ledger.stored)
        _, st, se, _ = stack.ledger.stored[sops[0]]
        deleted = [s for s in sops if stack.ledger.stored[s][2] == se]
        if point == "after-delete-commit":
            r = await stack.delete(client, doomed.base_url, f"/v2/studies/{st}/series/{se}", [])
            assert r is None  # the replica died before answering
        else:  # the survivor deletes; the doomed replica's janitor (first pass at start-up) dies mid-way
            stack.services.remove(doomed)
            from tests.faults.harness import stop_service

            stop_service(doomed)
            r = await stack.delete(client, survivor.base_url, f"/v2/studies/{st}/series/{se}", deleted)
            assert r is not None
            assert r.status_code in (200, 204)
            with pytest.raises(RuntimeError, match="exited with 70"):  # its janitor's first pass, at start-up
                stack.start_service(crash_point=point)
        if point == "after-delete-commit":
            code = await asyncio.to_thread(wait_exit, doomed, 60)
            assert code == 70, f"the replica did not stop at {point}"
        # The delete committed although it was never acknowledged; the client sees it gone.
        r = await client.get(
            f"{survivor.base_url}/v2/studies/{st}/series/{se}/metadata", headers={"Accept": "application/dicom+json"}
        )
        assert r.status_code == 404
        stack.ledger.deleted.update(deleted)
    report = await invariants.check(stack, survivor.base_url)
    assert report.orphans_after_janitor == 0
    figures(scenario=f"kill a replica during delete ({point})", **report.as_dict())
