"""Command line: ``python -m dicomlake serve | devstack | migrate``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from dicomlake.config import Settings
from dicomlake.errors import ConfigurationError


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        "dicomlake.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=30,
        access_log=False,
        log_config=None,
        lifespan="on",
    )


async def _migrate(settings: Settings) -> list[int]:
    from dicomlake.app import _credential
    from dicomlake.index.migrate import apply_migrations
    from dicomlake.index.pool import create_index_pool

    credential = _credential(settings) if settings.database.uses_entra_token else None
    try:
        async with create_index_pool(settings.database, credential) as pool, pool.acquire() as conn:
            return await apply_migrations(conn)
    finally:
        if credential is not None:
            await credential.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomlake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the API with settings from the environment")
    dev = sub.add_parser("devstack", help="start embedded PostgreSQL, Azurite and the service (make run)")
    dev.add_argument("--data-dir", default=".devstack", help="where PostgreSQL and Azurite keep their data")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)

    if args.command == "devstack":
        from dicomlake.devstack.run import run_devstack

        return run_devstack(args.data_dir)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigurationError as e:
        print(str(e), file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(settings)
        return 0
    applied = asyncio.run(_migrate(settings))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
