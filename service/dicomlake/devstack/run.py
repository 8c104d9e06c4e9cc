"""`make run`: embedded PostgreSQL and Azurite with data under ``.devstack/``, then the service.

Settings given in the environment win: with ``DICOM_DATABASE_URL`` (or host/user) no PostgreSQL is
started, with a storage setting no Azurite. Ctrl-C stops the service, then Azurite, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dicomlake.config import Settings
from dicomlake.devstack.azurite import AzuriteNotAvailable, LocalAzurite
from dicomlake.devstack.ports import free_port, port_is_free
from dicomlake.devstack.postgres import LocalPostgres, PostgresNotAvailable, ensure_database
from dicomlake.errors import ConfigurationError

DEFAULT_PG_PORT = 54329
DEFAULT_AZURITE_PORT = 10000


def _port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


def run_devstack(data_dir: str) -> int:
    root = Path.cwd()
    data = Path(data_dir).resolve()
    env = dict(os.environ)
    env.setdefault("DICOM_HOST", "127.0.0.1")
    env.setdefault("DICOM_PORT", "8080")
    postgres: LocalPostgres | None = None
    azurite: LocalAzurite | None = None
    try:
        if not env.get("DICOM_DATABASE_URL") and not env.get("DICOM_DATABASE_HOST"):
            postgres = LocalPostgres(data / "postgres", _port(DEFAULT_PG_PORT))
            print(
                f"starting embedded PostgreSQL on 127.0.0.1:{postgres.port} (data: {postgres.pgdata})",
                flush=True,
            )
            postgres.start()
            asyncio.run(ensure_database(postgres.admin_dsn, "dicomlake"))
            env["DICOM_DATABASE_URL"] = postgres.dsn("dicomlake")
        if not env.get("DICOM_STORAGE_CONNECTION_STRING") and not env.get("DICOM_STORAGE_ACCOUNT_URL"):
            azurite = LocalAzurite(root, _port(DEFAULT_AZURITE_PORT), location=data / "azurite")
            print(f"starting Azurite on 127.0.0.1:{azurite.port} (data: {azurite.location})", flush=True)
            azurite.start(log_path=data / "azurite.log")
            env["DICOM_STORAGE_CONNECTION_STRING"] = azurite.connection_string
            env.setdefault("DICOM_STORAGE_CREATE_CONTAINER", "true")
        try:
            settings = Settings.from_env(env)
        except ConfigurationError as e:
            print(str(e), file=sys.stderr)
            return 2
        _banner(settings, azurite)
        _serve(settings, env)
        return 0
    except (PostgresNotAvailable, AzuriteNotAvailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if azurite is not None:
            print("stopping Azurite", flush=True)
            azurite.stop()
        if postgres is not None:
            print("stopping PostgreSQL", flush=True)
            postgres.stop()


def _banner(settings: Settings, azurite: LocalAzurite | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "dicomlake is starting",
        f"  DICOMweb base URL : {base}/v2",
        f"  health            : {base}/health/check",
        f"  container         : {settings.storage.container}",
        f"  lake root         : AHDS/{settings.workspace}/dicom/{settings.service_name}/",
    ]
    if azurite is not None:
        lines.append(f"  Azurite connection string (Storage Explorer, AzCopy): {azurite.connection_string}")
    lines += ["  Ctrl-C stops the service, Azurite and PostgreSQL.", ""]
    print("\n".join(lines), flush=True)


def _serve(settings: Settings, env: dict[str, str]) -> None:
    import uvicorn

    from dicomlake.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
