"""Fixtures: the real checkout, and copies of its deployment files in which a test plants a defect."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from common import REPO_ROOT
from tools import CheckovRun

#: what a copy holds: every file the five checks read
COPIED = (
    "infra",
    "Dockerfile",
    ".dockerignore",
    "azure.yaml",
    "pyproject.toml",
    "service/dicomlake/config.py",
    "service/dicomlake/__main__.py",
    "service/dicomlake/index/migrations",
)


class Tree:
    """A copy of the deployment files under ``root`` that a test may edit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in COPIED:
            source = REPO_ROOT / name
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("checks", "types", "__pycache__"))
            else:
                shutil.copy2(source, target)

    def path(self, name: str) -> Path:
        return self.root / name

    def edit(self, name: str, old: str, new: str, count: int = 1) -> None:
        """Replace ``old`` (which must occur exactly ``count`` times) by ``new`` in file ``name``."""
        path = self.root / name
        text = path.read_text(encoding="utf-8")
        found = text.count(old)
        assert found == count, f"{name}: expected {count} occurrence(s) of {old!r}, found {found}"
        path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "copy")


@pytest.fixture(scope="session")
def make_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Tree]:
    def make(label: str) -> Tree:
        return Tree(tmp_path_factory.mktemp(label))

    return make


def messages(findings: Iterable[object]) -> str:
    return "\n".join(str(f) for f in findings)


@pytest.fixture(scope="session", autouse=True)
def checkov_run(request: pytest.FixtureRequest, make_tree: Callable[[str], Tree]) -> Iterator[CheckovRun | None]:
    """checkov over the real files and a copy with planted defects, started with the first test (if
    any checkov test is selected) and read by the checkov tests, which run last."""
    if not any(item.path.name == "test_checkov.py" for item in request.session.items):
        yield None
        return
    broken = make_tree("checkov-broken")
    storage = "infra/modules/storage-account.bicep"
    broken.edit(storage, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'")
    broken.edit(storage, "supportsHttpsTrafficOnly: true", "supportsHttpsTrafficOnly: false")
    broken.edit("Dockerfile", "USER 10001:10001\n", "")
    run = CheckovRun({"real": REPO_ROOT, "broken": broken.root})
    yield run
    run.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the checkov tests last, so the other checks run while checkov works."""
    items.sort(key=lambda item: item.path.name == "test_checkov.py")
