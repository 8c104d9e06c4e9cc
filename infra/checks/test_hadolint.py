"""Check 5: hadolint on the Dockerfile, every rule, failing at style level (hadolint.yaml)."""

from __future__ import annotations

import pytest
from common import REPO_ROOT
from conftest import Tree, messages
from run import hadolint_check


def test_real_dockerfile_is_clean() -> None:
    assert hadolint_check(REPO_ROOT) == []


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("WORKDIR /tmp\n", "RUN cd /tmp\n", "DL3003"),  # cd instead of WORKDIR
        ("FROM python:3.11-slim AS runtime", "FROM python AS runtime", "DL3006"),  # untagged base image
        (
            "FROM python:3.11-slim AS runtime",
            "FROM quay.io/python:3.11-slim AS runtime",
            "DL3026",
        ),  # untrusted registry
        (
            "RUN groupadd",
            "RUN apt-get update && apt-get install -y curl\nRUN groupadd",
            "DL3008",  # unpinned apt packages
        ),
    ],
)
def test_planted_defect_fails_hadolint(tree: Tree, old: str, new: str, code: str) -> None:
    tree.edit("Dockerfile", old, new)
    findings = hadolint_check(tree.root)
    assert any(code in f.message for f in findings), messages(findings)
