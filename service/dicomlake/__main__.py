"""Command line: ``python -m dicomlake serve | devstack | migrate | reindex --from-lake``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def _reindex_from_lake(settings: Settings, partition: str | None) -> int:
    """Rebuild the index from the lake (jobs/rebuild.py), drawing a progress bar on stderr. The run is
    recorded as a ``rebuild`` operation leased to this process, so ``GET /v2/operations/{id}`` shows its
    progress; if this process dies, a service replica's worker takes the operation over once the lease passes."""
    from dicomlake.app import _credential
    from dicomlake.errors import DicomWebError
    from dicomlake.index.migrate import apply_migrations
    from dicomlake.index.operations import OperationStore
    from dicomlake.index.pool import create_index_pool
    from dicomlake.jobs.rebuild import RebuildProgress, run_rebuild_operation, start_rebuild
    from dicomlake.jobs.reindex import worker_id
    from dicomlake.storage.blob_store import AzureBlobStore
    from dicomlake.storage.paths import LakeLayout

    def bar(p: RebuildProgress) -> None:
        filled = p.percent * 30 // 100
        print(
            f"\rrebuilding [{'#' * filled}{'.' * (30 - filled)}] {p.done}/{p.total} ({p.percent}%) failed {p.failed}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    needs_credential = settings.storage.uses_credential or settings.database.uses_entra_token
    credential = _credential(settings) if needs_credential else None
    try:
        if settings.storage.connection_string is not None:
            blobs = AzureBlobStore.from_connection_string(
                settings.storage.connection_string, settings.storage.container
            )
        else:
            assert settings.storage.account_url is not None
            assert credential is not None
            blobs = AzureBlobStore(settings.storage.account_url, settings.storage.container, credential)
        async with blobs, create_index_pool(settings.database, credential) as pool:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            owner = f"cli:{worker_id()}"
            try:
                op_id = await start_rebuild(pool, partition, owner=owner)
            except DicomWebError as e:
                print(e.message, file=sys.stderr)
                return 1
            print(f"operation {op_id}", file=sys.stderr)
            layout = LakeLayout(settings.workspace, settings.service_name)
            try:
                result = await run_rebuild_operation(
                    pool, blobs, layout, op_id, owner, partition=partition, on_progress=bar
                )
            except BaseException as e:
                with contextlib.suppress(DicomWebError):
                    error = e.message if isinstance(e, DicomWebError) else f"interrupted ({type(e).__name__})"
                    await OperationStore(pool).finish(op_id, owner=owner, status="failed", error=error)
                raise
            if result is None:
                print("\nthe rebuild operation was taken over by another worker", file=sys.stderr)
                return 1
            p = result
            op = await OperationStore(pool).get(op_id)
            if op is not None and op.status == "failed":
                print(f"\nthe rebuild failed: {op.error}", file=sys.stderr)
                return 1
    finally:
        if credential is not None:
            await credential.close()
    print(file=sys.stderr)
    print(
        f"rebuilt {p.rebuilt} instance(s), {p.skipped_existing} already indexed, {p.superseded} older version(s) "
        f"queued for deletion, {p.failed} failed; read {p.bytes_read} of {p.bytes_in_files} bytes"
    )
    for failure in p.failures[:20]:
        print(f"  failed: {failure}", file=sys.stderr)
    return 0 if p.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomlake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the API with settings from the environment")
    dev = sub.add_parser("devstack", help="start embedded PostgreSQL, Azurite and the service (make run)")
    dev.add_argument("--data-dir", default=".devstack", help="where PostgreSQL and Azurite keep their data")
    sub.add_parser("migrate", help="apply database migrations and exit")
    reindex = sub.add_parser("reindex", help="rebuild the index from the files in the lake (resumable)")
    reindex.add_argument("--from-lake", action="store_true", required=True, help="walk the data contract's folders")
    reindex.add_argument("--partition", default=None, help="only this partition (default: all)")
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
    if args.command == "reindex":
        return asyncio.run(_reindex_from_lake(settings, args.partition))
    applied = asyncio.run(_migrate(settings))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
