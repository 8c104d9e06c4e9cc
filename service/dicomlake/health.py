"""Health model: what each dependency looks like from this replica, and the detailed report."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class HealthStatus(enum.StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"


@dataclass(slots=True)
class ComponentHealth:
    name: str
    status: HealthStatus = HealthStatus.UNHEALTHY
    description: str = "Not checked yet."
    checked_at: float = field(default_factory=time.time)
    last_success_at: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def set(self, status: HealthStatus, description: str, **data: Any) -> None:
        self.status = status
        self.description = description
        self.checked_at = time.time()
        if status is HealthStatus.HEALTHY:
            self.last_success_at = self.checked_at
        self.data = dict(data)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status.value,
            "description": self.description,
        }
        if self.data:
            out["data"] = self.data
        return out


def overall(components: list[ComponentHealth]) -> HealthStatus:
    statuses = {c.status for c in components}
    if HealthStatus.UNHEALTHY in statuses:
        return HealthStatus.UNHEALTHY
    if HealthStatus.DEGRADED in statuses:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


class HealthMonitor:
    """Answers health questions for this replica: the database is checked on demand (cheap), storage
    from the lake probe's latest result (so health checks never hammer the customer's account)."""

    def __init__(self, pool: Any, storage: ComponentHealth, *, probe_interval: float) -> None:
        self._pool = pool
        self._storage = storage
        self._probe_interval = probe_interval
        self._database = ComponentHealth(name="database")

    async def check(self) -> list[ComponentHealth]:
        await self._check_database()
        return [self._database, self._storage_view()]

    async def background(self) -> list[ComponentHealth]:
        """Details about background work, reported by ``/health/check`` but not part of readiness or the
        overall status (a stuck blob deletion must not take a replica out of service)."""
        return [await self._deletion_queue()]

    async def _deletion_queue(self) -> ComponentHealth:
        import asyncio

        from dicomlake.index.deletions import EXHAUSTED_AFTER_ATTEMPTS, deletion_queue_stats

        component = ComponentHealth(name="deletionQueue")
        try:
            async with asyncio.timeout(3):
                stats = await deletion_queue_stats(self._pool)
        except Exception as e:  # any failure is reported, none raised
            component.set(HealthStatus.UNHEALTHY, f"The deletion queue cannot be read: {type(e).__name__}.")
            return component
        data = {
            "backlog": stats.backlog,
            "due": stats.due,
            "exhausted": stats.exhausted,
            "oldestAgeSeconds": round(stats.oldest_age_seconds),
        }
        if stats.exhausted:
            component.set(
                HealthStatus.DEGRADED,
                f"{stats.exhausted} file deletion(s) failed {EXHAUSTED_AFTER_ATTEMPTS} times or more "
                f"(last error: {stats.last_error}); they are retried with back-off up to hourly and the files stay "
                "in the lake until then. Check the service's access to the storage container.",
                **data,
            )
        else:
            component.set(
                HealthStatus.HEALTHY,
                f"{stats.backlog} file deletion(s) queued, {stats.due} due now.",
                **data,
            )
        return component

    def _storage_view(self) -> ComponentHealth:
        stale_after = 2 * self._probe_interval + 15
        last = self._storage.last_success_at
        if self._storage.status is HealthStatus.HEALTHY and last is not None and time.time() - last > stale_after:
            view = ComponentHealth(name=self._storage.name)
            view.set(HealthStatus.DEGRADED, f"The lake probe has not succeeded for {time.time() - last:.0f} s.")
            return view
        return self._storage

    async def _check_database(self) -> None:
        import asyncio

        try:
            async with asyncio.timeout(3):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except Exception as e:  # any failure is reported, none raised
            self._database.set(HealthStatus.UNHEALTHY, f"PostgreSQL cannot be used: {type(e).__name__}.")
        else:
            self._database.set(HealthStatus.HEALTHY, "PostgreSQL answered.")
