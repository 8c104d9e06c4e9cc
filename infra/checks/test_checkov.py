"""Check 4: checkov (bicep and dockerfile frameworks, no download), with the accepted findings of
checkov-accepted.yaml. checkov is slow to start, so one run (started in conftest.py) scans the real
files and a copy with planted defects."""

from __future__ import annotations

import pytest
from conftest import messages
from tools import Accepted, CheckovResult, CheckovRun, checkov_findings, load_accepted

STORAGE = "infra/modules/storage-account.bicep"


@pytest.fixture(scope="session")
def results(checkov_run: CheckovRun | None) -> dict[str, CheckovResult]:
    assert checkov_run is not None
    return checkov_run.results()


def test_real_files_have_only_accepted_findings(results: dict[str, CheckovResult]) -> None:
    real = results["real"]
    assert real.parsing_errors == 0
    assert checkov_findings(real) == [], messages(checkov_findings(real))
    # checkov really looked at both frameworks and at the modules
    assert {"Dockerfile", STORAGE, "infra/modules/registry.bicep"} <= real.files_with_results


def test_every_accepted_finding_has_a_reason() -> None:
    accepted = load_accepted()
    assert accepted
    assert all(len(entry.reason) > 40 for entry in accepted)


@pytest.mark.parametrize(
    ("check_id", "path"),
    [
        ("CKV_AZURE_44", STORAGE),  # TLS 1.0 allowed
        ("CKV_AZURE_3", STORAGE),  # HTTP allowed
        ("CKV_DOCKER_3", "Dockerfile"),  # runs as root
    ],
)
def test_planted_defect_fails_checkov(results: dict[str, CheckovResult], check_id: str, path: str) -> None:
    findings = checkov_findings(results["broken"])
    assert any(check_id in f.message and f.path == path for f in findings), messages(findings)


def test_a_parsing_error_fails(results: dict[str, CheckovResult]) -> None:
    # checkov itself exits 0 when the only problem is a file it could not parse
    unparsed = CheckovResult(results["real"].failures, 1, results["real"].files_with_results)
    assert "could not parse" in messages(checkov_findings(unparsed))


def test_a_stale_acceptance_fails(results: dict[str, CheckovResult]) -> None:
    stale = [*load_accepted(), Accepted("CKV_AZURE_1", STORAGE, "Microsoft.Storage/storageAccounts.account", "x" * 50)]
    assert "CKV_AZURE_1 on Microsoft.Storage/storageAccounts.account" in messages(
        checkov_findings(results["real"], stale)
    )
