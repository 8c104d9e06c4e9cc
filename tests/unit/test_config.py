from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicomlake.config import ENVIRONMENT_VARIABLES, CompatibilityProfile, Settings
from dicomlake.errors import ConfigurationError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BASE = {"DICOM_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "DICOM_DATABASE_URL": "postgresql://x@h/db"}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.storage.container == "dicom"
    assert s.storage.create_container is True  # connection string: local development
    assert s.workspace == "workspace"
    assert s.service_name == "dicom"
    assert s.port == 8080
    assert s.compatibility is CompatibilityProfile.STANDARD


def test_managed_identity_settings() -> None:
    s = Settings.from_env(
        {
            "DICOM_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
            "DICOM_DATABASE_HOST": "pg.postgres.database.azure.com",
            "DICOM_DATABASE_USER": "id-dicom",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
            "DICOM_COMPATIBILITY": "azure",
        }
    )
    assert s.storage.uses_credential
    assert s.storage.create_container is False
    assert s.storage.managed_identity_client_id == "00000000-0000-0000-0000-000000000001"
    assert s.database.uses_entra_token
    assert s.database.sslmode == "require"
    assert s.compatibility is CompatibilityProfile.AZURE


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                "DICOM_STORAGE_CONTAINER": "Bad_Name",
                "DICOM_PORT": "eighty",
                "DICOM_COMPATIBILITY": "orthanc",
                "DICOM_WORKSPACE": "a/b",
            }
        )
    text = str(info.value)
    for fragment in (
        "DICOM_STORAGE_CONTAINER",
        "DICOM_PORT must be a whole number",
        "DICOM_COMPATIBILITY",
        "DICOM_WORKSPACE",
        "No storage configured",
        "No database configured",
        "docs/configuration.md",
    ):
        assert fragment in text


def test_dfs_endpoint_is_refused_with_advice() -> None:
    with pytest.raises(ConfigurationError, match="Blob endpoint"):
        Settings.from_env(
            {**BASE, "DICOM_STORAGE_ACCOUNT_URL": "https://acct.dfs.core.windows.net"}
            | {"DICOM_STORAGE_CONNECTION_STRING": ""}
        )


def test_docs_list_exactly_the_variables_the_service_reads() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOCS.read_text(), flags=re.MULTILINE))
    assert documented == set(ENVIRONMENT_VARIABLES)


def test_code_reads_only_declared_variables() -> None:
    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parents[2] / "service").rglob("*.py"))
    read = set(re.findall(r'"((?:DICOM|AZURE)_[A-Z_]+)"', source))
    assert read <= set(ENVIRONMENT_VARIABLES)
