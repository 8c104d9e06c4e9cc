"""Create the asyncpg pool: a URL with credentials, or Microsoft Entra tokens for Azure PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from azure.core.credentials_async import AsyncTokenCredential

from dicomlake.config import DatabaseSettings
from dicomlake.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

#: Scope of Azure Database for PostgreSQL tokens ("OSS RDBMS").
POSTGRES_TOKEN_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
#: A statement taking longer fails (503). 15 s rather than 30: a database that accepts connections but
#: does not answer (frozen, failing over) must become a 503 within seconds (tests/faults). Note that the
#: start-up migrations run on a pool connection and are bound by it too.
COMMAND_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
#: How long a request waits for a free connection before the service answers 503.
ACQUIRE_TIMEOUT_SECONDS = 5.0


def token_password(credential: AsyncTokenCredential) -> Callable[[], Awaitable[str]]:
    """asyncpg accepts an async callable as password: every new connection gets a fresh token."""

    async def password() -> str:
        token = await credential.get_token(POSTGRES_TOKEN_SCOPE)
        return token.token

    return password


def _ssl_context(sslmode: str) -> ssl.SSLContext | bool:
    if sslmode == "disable":
        return False
    context = ssl.create_default_context()
    if sslmode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif sslmode == "verify-ca":
        context.check_hostname = False
    return context


def connect_kwargs(settings: DatabaseSettings, credential: AsyncTokenCredential | None) -> dict[str, Any]:
    if settings.url is not None:
        return {"dsn": settings.url}
    if credential is None:
        raise ValueError("Entra token authentication needs a credential")
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "database": settings.name,
        "password": token_password(credential),
        "ssl": _ssl_context(settings.sslmode),
    }


@contextlib.asynccontextmanager
async def create_index_pool(
    settings: DatabaseSettings,
    credential: AsyncTokenCredential | None = None,
    *,
    wait_seconds: float = 60.0,
) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool, retrying for up to ``wait_seconds`` while the database starts."""
    kwargs = connect_kwargs(settings, credential)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            pool = await asyncpg.create_pool(
                min_size=1,
                max_size=settings.pool_max,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
                timeout=CONNECT_TIMEOUT_SECONDS,
                max_inactive_connection_lifetime=300,
                server_settings={"application_name": "dicomlake"},
                **kwargs,
            )
            break
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            if asyncio.get_running_loop().time() >= deadline:
                raise DatabaseUnavailableError(
                    f"Could not connect to PostgreSQL after {attempt} attempts: {type(e).__name__}: {e}"
                ) from e
            logger.warning(
                "database not reachable yet, retrying",
                extra={"attempt": attempt, "error": type(e).__name__},
            )
            await asyncio.sleep(min(2.0, 0.25 * attempt))
    try:
        yield pool
    finally:
        await pool.close()
