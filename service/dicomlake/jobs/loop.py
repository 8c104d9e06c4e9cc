"""The loop of a background worker that any replica may run: a pass now, then again after ``interval``
seconds, or sooner when woken (e.g. by the request that created the work), until told to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


async def run_until_stopped(
    run_once: Callable[[], Awaitable[Any]],
    *,
    stop: asyncio.Event,
    wake: asyncio.Event,
    interval: float,
    name: str,
) -> None:
    while not stop.is_set():
        wake.clear()
        try:
            await run_once()
        except Exception:  # a failed pass is logged; the next one retries
            logger.exception("background pass failed", extra={"job": name})
        waiter = asyncio.ensure_future(wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
