"""Fault-test fixtures: PostgreSQL and Azurite owned by these tests (so they can be frozen with
SIGSTOP), a fault proxy in front of each, and a per-test ``stack`` (database, container, services).
Figures of each scenario are appended to ``.bench/faults/figures.jsonl`` for docs/reliability.md."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomlake.devstack.azurite import AzuriteNotAvailable, LocalAzurite
from dicomlake.devstack.ports import free_port
from dicomlake.devstack.postgres import LocalPostgres, PostgresNotAvailable
from tests.conftest import PROJECT_ROOT
from tests.faults.harness import Servers, Stack
from tests.faults.proxy import FaultProxy

FIGURES = PROJECT_ROOT / ".bench" / "faults" / "figures.jsonl"


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[Servers]:
    with tempfile.TemporaryDirectory(prefix="dicomlake-faults-") as tmp:
        postgres = LocalPostgres(Path(tmp) / "pg", free_port(), durable=False)
        azurite = LocalAzurite(PROJECT_ROOT, free_port())
        try:
            postgres.start()
            azurite.start()
        except (PostgresNotAvailable, AzuriteNotAvailable) as e:
            postgres.stop()
            pytest.fail(f"fault tests need PostgreSQL and Azurite: {e}", pytrace=False)
        pg_proxy = FaultProxy(postgres.port).start()
        blob_proxy = FaultProxy(azurite.port).start()
        servers = Servers(postgres, azurite, pg_proxy, blob_proxy)
        try:
            yield servers
        finally:
            servers.reset_faults()
            pg_proxy.stop()
            blob_proxy.stop()
            azurite.stop()
            postgres.stop()


@pytest.fixture
async def stack(fault_servers: Servers, tmp_path: Path) -> AsyncIterator[Stack]:
    fault_servers.reset_faults()
    s = Stack(fault_servers, tmp_path)
    await s.create()
    try:
        yield s
    finally:
        await s.drop()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Append one scenario's figures (instances acknowledged, lost, orphans, time to recover)."""

    def record(**values: Any) -> None:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES.open("a") as f:
            f.write(json.dumps({"test": request.node.name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **values}) + "\n")

    return record
