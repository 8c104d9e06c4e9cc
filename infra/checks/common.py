"""What every check returns, and where the files it checks live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the checks' own folder (infra/checks) and the type data they use (infra/types), always from this
#: checkout: a planted-defect test checks a copy of the deployment files with the real checker.
CHECKS_DIR = Path(__file__).resolve().parent
TYPES_DIR = CHECKS_DIR.parent / "types"
REPO_ROOT = CHECKS_DIR.parent.parent


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: a file (relative to the checked root), a line when known, and what is wrong."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


def relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
