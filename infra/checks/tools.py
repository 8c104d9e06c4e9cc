"""checkov and hadolint, run over one or more copies of the deployment files.

checkov starts slowly (several seconds), so :func:`run_checkov` scans any number of trees in one
invocation: each tree's Bicep files and Dockerfile are staged in a folder of their own and the results
are split back by folder. Accepted checkov findings are listed, with the reason, in
``checkov-accepted.yaml``; any other finding, an accepted one that no longer occurs, or a file checkov
could not parse fails the check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bicep import bicep_files
from common import CHECKS_DIR, Finding

ACCEPTED_FILE = CHECKS_DIR / "checkov-accepted.yaml"
HADOLINT_CONFIG = CHECKS_DIR / "hadolint.yaml"
FRAMEWORKS = "bicep,dockerfile"


def _tool(name: str) -> str:
    """A tool installed in the same virtual environment as this interpreter."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (make test-infra installs it into .venv-infra)")
    return found


# ---- checkov -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckovFailure:
    check_id: str
    name: str
    path: str  # relative to the tree's root, e.g. infra/modules/storage-account.bicep
    resource: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.check_id} {self.name} ({self.resource})"


@dataclass(frozen=True)
class CheckovResult:
    failures: tuple[CheckovFailure, ...]
    parsing_errors: int
    files_with_results: frozenset[str]


@dataclass(frozen=True)
class Accepted:
    check: str
    path: str
    resource: str
    reason: str

    def matches(self, failure: CheckovFailure) -> bool:
        return (self.check, self.path, self.resource) == (failure.check_id, failure.path, failure.resource)


def load_accepted(path: Path = ACCEPTED_FILE) -> list[Accepted]:
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    accepted: list[Accepted] = []
    for entry in entries:
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            raise ValueError(f"{path}: every accepted finding needs a reason ({entry})")
        accepted.append(Accepted(entry["check"], entry["file"], entry["resource"], reason))
    return accepted


def stage_tree(root: Path, destination: Path) -> None:
    """Copy what checkov scans: the Bicep files (infra/...) and the Dockerfile."""
    for path in bicep_files(root / "infra"):
        target = destination / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if (root / "Dockerfile").exists():
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / "Dockerfile", destination / "Dockerfile")


class CheckovRun:
    """One checkov process over several trees, started at once and read when needed (so that it
    can run while other tests do)."""

    def __init__(self, trees: Mapping[str, Path]) -> None:
        self.labels = list(trees)
        self._stage = tempfile.TemporaryDirectory(prefix="checkov-")
        stage = Path(self._stage.name)
        for label, root in trees.items():
            stage_tree(root, stage / label)
        command = [
            _tool("checkov"),
            "--directory", str(stage),
            "--framework", FRAMEWORKS,
            "--skip-download",
            "--output", "json",
            "--compact",
        ]  # fmt: skip
        environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
        self._process = subprocess.Popen(
            command, cwd=stage, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._results: dict[str, CheckovResult] | None = None

    def close(self) -> None:
        """Stop checkov if nobody read its results, and remove the staged files."""
        if self._results is not None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()
        self._stage.cleanup()

    def results(self) -> dict[str, CheckovResult]:
        if self._results is None:
            try:
                stdout, stderr = self._process.communicate(timeout=600)
            finally:
                self._stage.cleanup()
            if self._process.returncode not in (0, 1):
                raise RuntimeError(f"checkov failed ({self._process.returncode}):\n{stderr[-4000:]}")
            try:
                reports: Any = json.loads(stdout)
            except json.JSONDecodeError as error:
                raise RuntimeError(f"checkov printed no JSON report: {stdout[:2000]}{stderr[-2000:]}") from error
            self._results = _split(reports if isinstance(reports, list) else [reports], self.labels)
        return self._results


def run_checkov(trees: Mapping[str, Path]) -> dict[str, CheckovResult]:
    """Scan each tree (label -> checkout root) with one checkov run."""
    return CheckovRun(trees).results()


def _split(reports: list[dict[str, Any]], labels: list[str]) -> dict[str, CheckovResult]:
    failures: dict[str, list[CheckovFailure]] = {label: [] for label in labels}
    seen: dict[str, set[str]] = {label: set() for label in labels}
    parsing_errors = 0
    for report in reports:
        # checkov counts parsing errors per run, not per file: they are charged to every tree
        parsing_errors += int(report.get("summary", {}).get("parsing_errors", 0))
        results = report.get("results", {})
        for kind in ("failed_checks", "passed_checks", "skipped_checks"):
            for item in results.get(kind, []):
                label, _, relative = item["file_path"].lstrip("/").partition("/")
                if label not in seen:
                    continue
                seen[label].add(relative)
                if kind == "failed_checks":
                    failures[label].append(
                        CheckovFailure(
                            check_id=item["check_id"],
                            name=item.get("check_name", ""),
                            path=relative,
                            resource=item.get("resource", ""),
                            line=int((item.get("file_line_range") or [0])[0]),
                        )
                    )
    return {
        label: CheckovResult(tuple(sorted(failures[label], key=str)), parsing_errors, frozenset(seen[label]))
        for label in labels
    }


def checkov_findings(result: CheckovResult, accepted: list[Accepted] | None = None) -> list[Finding]:
    accepted = load_accepted() if accepted is None else accepted
    findings: list[Finding] = []
    if result.parsing_errors:
        findings.append(Finding("infra", 0, f"checkov could not parse {result.parsing_errors} file(s)"))
    for failure in result.failures:
        if not any(entry.matches(failure) for entry in accepted):
            findings.append(
                Finding(failure.path, failure.line, f"checkov {failure.check_id}: {failure.name} ({failure.resource})")
            )
    for entry in accepted:
        if not any(entry.matches(failure) for failure in result.failures):
            findings.append(
                Finding(
                    "infra/checks/checkov-accepted.yaml",
                    0,
                    f"accepted finding {entry.check} on {entry.resource} in {entry.path} no longer occurs: remove it",
                )
            )
    return findings


# ---- hadolint ------------------------------------------------------------------------------------------


def run_hadolint(root: Path) -> list[Finding]:
    dockerfile = root / "Dockerfile"
    if not dockerfile.exists():
        return [Finding("Dockerfile", 0, "no Dockerfile")]
    command = [_tool("hadolint"), "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        results: list[dict[str, Any]] = json.loads(completed.stdout or "[]")
    except json.JSONDecodeError as error:
        raise RuntimeError(f"hadolint failed: {completed.stdout}{completed.stderr}") from error
    findings = [
        Finding("Dockerfile", int(r.get("line", 0)), f"hadolint {r.get('code')} ({r.get('level')}): {r.get('message')}")
        for r in results
    ]
    if completed.returncode != 0 and not findings:
        findings.append(Finding("Dockerfile", 0, f"hadolint failed: {completed.stderr.strip()}"))
    return findings
