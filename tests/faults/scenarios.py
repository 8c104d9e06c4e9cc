"""Fault scenarios shared by the smoke subset (``make test``) and the full runs (``make test-faults``)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from tests.factories import instance_bytes, new_uid
from tests.faults.harness import Stack, kill9, wait_exit

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
