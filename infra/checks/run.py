"""The five offline checks of the deployment, by name, and a command line to run them.

    .venv-infra/bin/python infra/checks/run.py            # all five on this checkout
    .venv-infra/bin/python infra/checks/run.py types policy --root /some/copy

``make test-infra`` runs them through pytest (``test_*.py`` beside this file), together with the
tests that plant a defect in a copy of the files and expect each check to fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from azure_types import check_types
from common import REPO_ROOT, Finding
from deployment import parse_all
from policy import check_policy
from tools import checkov_findings, run_checkov, run_hadolint


def parse_check(root: Path) -> list[Finding]:
    """1. Every .bicep file parses with pycep-parser (checkov skips files it cannot parse)."""
    _, findings = parse_all(root)
    return findings


def types_check(root: Path) -> list[Finding]:
    """2. Literal properties against the Azure resource type data in infra/types."""
    files, findings = parse_all(root)
    return findings or check_types(files.values(), root)


def policy_check(root: Path) -> list[Finding]:
    """3. The project's own rules: security settings, roles, lifecycle, probes, env vars, parameters."""
    return check_policy(root)


def checkov_check(root: Path) -> list[Finding]:
    """4. checkov (bicep, dockerfile) with the accepted findings of checkov-accepted.yaml."""
    return checkov_findings(run_checkov({"tree": root})["tree"])


def hadolint_check(root: Path) -> list[Finding]:
    """5. hadolint on the Dockerfile."""
    return run_hadolint(root)


CHECKS: dict[str, Callable[[Path], list[Finding]]] = {
    "parse": parse_check,
    "types": types_check,
    "policy": policy_check,
    "checkov": checkov_check,
    "hadolint": hadolint_check,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checks", nargs="*", choices=[*CHECKS, []], help="checks to run (default: all)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="checkout to check (default: this one)")
    arguments = parser.parse_args(argv)
    failed = False
    for name in arguments.checks or list(CHECKS):
        started = time.monotonic()
        findings = CHECKS[name](arguments.root)
        elapsed = time.monotonic() - started
        print(f"{name:9} {'FAIL' if findings else 'ok'} ({elapsed:.1f} s)")
        for finding in findings:
            print(f"    {finding}")
        failed = failed or bool(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
