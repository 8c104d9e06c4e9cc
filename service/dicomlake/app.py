"""Composition root: ``create_app()`` builds everything inside the lifespan; nothing at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Router

from dicomlake.config import Settings
from dicomlake.deps import Deps
from dicomlake.errors import DicomWebError
from dicomlake.health import HealthMonitor
from dicomlake.index.migrate import apply_migrations
from dicomlake.index.pool import create_index_pool
from dicomlake.jobs.janitor import Janitor
from dicomlake.jobs.lake_probe import LakeProbe
from dicomlake.jobs.rebuild import RebuildWorker
from dicomlake.jobs.reindex import ReindexWorker, worker_id
from dicomlake.logs import setup_logging
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout
from dicomlake.web.auth import AuditMiddleware, AuthMiddleware, CorsMiddleware, open_security
from dicomlake.web.compression import JsonGzipMiddleware
from dicomlake.web.errors import handle_dicomweb_error, handle_unexpected_error
from dicomlake.web.limits import LimitsMiddleware
from dicomlake.web.middleware import RequestContextMiddleware
from dicomlake.web.routes import build_routes

logger = logging.getLogger(__name__)


def _account_hint(settings: Settings) -> str:
    if settings.storage.account_url:
        return urlsplit(settings.storage.account_url).netloc.split(".")[0]
    for part in (settings.storage.connection_string or "").split(";"):
        if part.lower().startswith("accountname="):
            return part.split("=", 1)[1]
    return "?"


def _credential(settings: Settings) -> AsyncTokenCredential:
    from azure.identity.aio import DefaultAzureCredential

    client_id = settings.storage.managed_identity_client_id
    return DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()


@contextlib.asynccontextmanager
async def build_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Open every adapter, apply migrations, start background jobs; close all in reverse order."""
    async with contextlib.AsyncExitStack() as stack:
        needs_credential = settings.storage.uses_credential or settings.database.uses_entra_token
        credential: AsyncTokenCredential | None = None
        if needs_credential:
            credential = _credential(settings)
            stack.push_async_callback(credential.close)

        pool = await stack.enter_async_context(create_index_pool(settings.database, credential))
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            logger.info("database migrated", extra={"applied": applied})

        if settings.storage.connection_string is not None:
            blobs = AzureBlobStore.from_connection_string(
                settings.storage.connection_string, settings.storage.container
            )
        else:
            assert settings.storage.account_url is not None
            assert credential is not None
            blobs = AzureBlobStore(settings.storage.account_url, settings.storage.container, credential)
        stack.push_async_callback(blobs.close)
        if settings.storage.create_container:
            try:
                await blobs.create_container()
            except DicomWebError as e:  # reported by health; the service still starts
                logger.warning("could not create the storage container", extra={"code": e.code})

        layout = LakeLayout(settings.workspace, settings.service_name)
        probe = LakeProbe(blobs, layout, interval=settings.health_probe_interval, account_hint=_account_hint(settings))
        await probe.run_once()
        health = HealthMonitor(pool, probe.health, probe_interval=settings.health_probe_interval)
        reindex = ReindexWorker(pool) if settings.operations_worker else None
        rebuild = RebuildWorker(pool, blobs, layout, owner=worker_id()) if settings.operations_worker else None
        deps = Deps(
            settings=settings,
            pool=pool,
            blobs=blobs,
            layout=layout,
            probe=probe,
            health=health,
            reindex=reindex,
            rebuild=rebuild,
        )

        stop = asyncio.Event()
        async with asyncio.TaskGroup() as jobs:
            jobs.create_task(probe.run_forever(stop), name="lake-probe")
            jobs.create_task(Janitor(pool, blobs).run_forever(stop), name="janitor")
            if reindex is not None:
                jobs.create_task(reindex.run_forever(stop), name="reindex")
            if rebuild is not None:
                jobs.create_task(rebuild.run_forever(stop), name="rebuild-from-lake")
            try:
                yield deps
            finally:
                stop.set()


def create_app(settings: Settings | None = None, *, environ: Mapping[str, str] | None = None) -> Starlette:
    """The ASGI application. ``settings`` default to the environment, read when the app starts."""
    routes = build_routes()
    router = Router(routes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        resolved = settings or Settings.from_env(environ if environ is not None else os.environ)
        setup_logging(resolved.log_level)
        async with build_deps(resolved) as deps, open_security(resolved) as security:
            logger.info("service started", extra={"compatibility": resolved.compatibility.value})
            yield {"deps": deps, "security": security}
        logger.info("service stopped")

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestContextMiddleware, router=router),
            Middleware(JsonGzipMiddleware),
            # security (web/auth.py): audit record, CORS, limits, then token and role checks
            Middleware(AuditMiddleware, router=router),
            Middleware(CorsMiddleware),
            Middleware(LimitsMiddleware),
            Middleware(AuthMiddleware, router=router),
        ],
        exception_handlers={DicomWebError: handle_dicomweb_error, Exception: handle_unexpected_error},
    )
