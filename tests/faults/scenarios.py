"""Fault scenarios shared by the smoke subset (``make test``) and the full runs (``make test-faults``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.factories import instance_bytes, new_uid
from tests.faults.harness import Stack, kill9, wait_exit, wait_until

CRASH_POINTS = ("after-reserve", "after-blob-write", "before-commit", "after-commit")


@dataclass
class KillFigures:
    kills: int = 0
    by_point: dict[str, int] = field(default_factory=dict)
    recover_seconds: list[float] = field(default_factory=list)


async def kill_during_ingest(
    stack: Stack, *, per_point: int, random_kills: int, points: tuple[str, ...] = CRASH_POINTS, seed: int = 9
) -> KillFigures:
    """A steady replica stores while a second replica, armed with a crash point, dies on every store
    (``per_point`` times per crash point); then the steady replica itself is ``kill -9``-ed at random
    moments during concurrent uploads ``random_kills`` times and restarted. Time to recover: from the
    kill until a restarted replica answers ready."""
    rng = random.Random(seed)
    figures = KillFigures()
    steady = stack.start_service()
    study = new_uid()
    async with httpx.AsyncClient(timeout=60) as client:
        for point in points:
            for _ in range(per_point):
                armed = stack.start_service(crash_point=point)
                series = new_uid()
                good = [instance_bytes(study=study, series=series, rows=64, columns=64) for _ in range(2)]
                doomed = [instance_bytes(study=study, series=series, rows=64, columns=64)]
                await asyncio.gather(
                    stack.stow(client, steady.base_url, good), stack.stow(client, armed.base_url, doomed)
                )
                code = await asyncio.to_thread(wait_exit, armed, 30)
                assert code == 70, f"the armed replica did not stop at {point} (exit {code})"
                figures.kills += 1
                figures.by_point[point] = figures.by_point.get(point, 0) + 1
        for _ in range(random_kills):
            series = new_uid()
            batches = [
                [instance_bytes(study=study, series=series, rows=256, columns=256) for _ in range(3)] for _ in range(4)
            ]
            tasks = [asyncio.create_task(stack.stow(client, steady.base_url, b)) for b in batches]
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            kill9(steady)
            killed_at = time.monotonic()
            await asyncio.gather(*tasks)
            figures.kills += 1
            figures.by_point["random"] = figures.by_point.get("random", 0) + 1
            steady = await asyncio.to_thread(stack.start_service)
            figures.recover_seconds.append(time.monotonic() - killed_at)
    return figures


@dataclass
class OutageFigures:
    requests: int = 0
    answered_503: int = 0
    max_latency_seconds: float = 0.0
    health_named_cause: bool = False
    live_always_ok: bool = True
    recover_seconds: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)


async def outage(
    stack: Stack,
    *,
    start: Callable[[], None],
    end: Callable[[], None],
    component: str,
    seconds: float,
    expect_status: int = 503,
) -> OutageFigures:
    """Store a baseline, then for ``seconds`` keep storing, retrieving and asking health while the
    dependency is down; restore it and measure how long until a store succeeds and the replica is
    ready again (same process: no restart)."""
    figures = OutageFigures()
    service = stack.services[-1] if stack.services else stack.start_service()
    assert service.process is not None
    pid = service.process.pid
    study, series = new_uid(), new_uid()
    async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as client:
        baseline = [instance_bytes(study=study, series=series) for _ in range(3)]
        r = await stack.stow(client, "", baseline)
        assert r is not None
        assert r.status_code == 200, r.text
        sop = next(iter(stack.ledger.stored))
        _, st, se, _ = stack.ledger.stored[sop]
        wado = f"/v2/studies/{st}/series/{se}/instances/{sop}"
        start()
        began = time.monotonic()
        try:
            while time.monotonic() - began < seconds:
                for what in ("stow", "wado", "metadata"):
                    t0 = time.monotonic()
                    if what == "stow":
                        r = await stack.stow(client, "", [instance_bytes(study=study, series=series)])
                    else:
                        url = wado + ("/metadata" if what == "metadata" else "")
                        r = await client.get(url, headers={"Accept": "*/*"})
                        stack.ledger.record(what, r)
                    assert r is not None, f"{what}: connection broken during the outage"
                    figures.requests += 1
                    figures.max_latency_seconds = max(figures.max_latency_seconds, time.monotonic() - t0)
                    figures.statuses[r.status_code] = figures.statuses.get(r.status_code, 0) + 1
                    if r.status_code == expect_status:
                        figures.answered_503 += 1
                        with contextlib.suppress(ValueError):
                            figures.codes.add(r.json().get("code", ""))
                live = await client.get("/health/live")
                figures.live_always_ok &= live.status_code == 200
                check = await client.get("/health/check")
                for d in check.json()["details"]:
                    if d["name"] == component and d["status"] != "Healthy":
                        figures.health_named_cause = True
                await asyncio.sleep(0.5)
        finally:
            end()
        restored = time.monotonic()

        async def recovered() -> bool:
            ready = await client.get("/health/ready")
            if ready.status_code != 200:
                return False
            r = await stack.stow(client, "", [instance_bytes(study=study, series=series)])
            return r is not None and r.status_code == 200

        figures.recover_seconds = await wait_until(recovered, timeout=90, interval=0.5)
        if figures.recover_seconds is not None:
            figures.recover_seconds = round(time.monotonic() - restored, 1)
    assert service.process.poll() is None, "the replica died"
    assert service.process.pid == pid
    return figures
