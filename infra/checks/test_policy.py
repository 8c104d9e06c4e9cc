"""Check 3: the project's rules on the parsed files (security, roles, lifecycle, database, app,
environment variables, parameters, azd, Dockerfile)."""

from __future__ import annotations

import pytest
from common import REPO_ROOT
from conftest import Tree, messages
from deployment import environment_variables
from run import policy_check

MAIN = "infra/main.bicep"
STORAGE = "infra/modules/storage-account.bicep"
ROLE = "infra/modules/storage-role.bicep"
LIFECYCLE = "infra/modules/storage-lifecycle.bicep"
POSTGRES = "infra/modules/postgres.bicep"
APP = "infra/modules/container-app.bicep"
CLIENT_ID_ENTRY = (
    "            {\n              name: 'AZURE_CLIENT_ID'\n              value: identityClientId\n            }\n"
)


def env_entry(name: str, value: str) -> str:
    return f"            {{\n              name: '{name}'\n              value: {value}\n            }}\n"


def test_real_files_follow_the_policy() -> None:
    assert policy_check(REPO_ROOT) == []


def test_environment_variables_are_read_from_the_service() -> None:
    names = environment_variables(REPO_ROOT)
    assert {"DICOM_STORAGE_ACCOUNT_URL", "AZURE_CLIENT_ID", "DICOM_DATABASE_USER"} <= names


# (file, text, replacement, expected words in a finding)
DEFECTS: dict[str, tuple[str, str, str, str]] = {
    "shared key enabled": (
        STORAGE,
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
        "must set allowSharedKeyAccess: false (shared key must be disabled",
    ),
    "hierarchical namespace off": (STORAGE, "isHnsEnabled: true", "isHnsEnabled: false", "isHnsEnabled: true"),
    "old TLS": (STORAGE, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_1'", "minimumTlsVersion: 'TLS1_2'"),
    "anonymous blob access": (
        STORAGE,
        "allowBlobPublicAccess: false",
        "allowBlobPublicAccess: true",
        "allowBlobPublicAccess: false",
    ),
    "HTTP allowed": (
        STORAGE,
        "supportsHttpsTrafficOnly: true",
        "supportsHttpsTrafficOnly: false",
        "supportsHttpsTrafficOnly: true",
    ),
    "public container": (STORAGE, "publicAccess: 'None'", "publicAccess: 'Blob'", "publicAccess 'None'"),
    "new account not optional": (
        MAIN,
        "'modules/storage-account.bicep' = if (!bringYourOwnStorage) {",
        "'modules/storage-account.bicep' = {",
        "must be conditional: a customer may bring their own account",
    ),
    "archive rule": (
        LIFECYCLE,
        "  tierToCold: {\n    daysAfterModificationGreaterThan: coldAfterDays\n  }\n",
        "  tierToCold: {\n    daysAfterModificationGreaterThan: coldAfterDays\n  }\n"
        "  tierToArchive: {\n    daysAfterModificationGreaterThan: 365\n  }\n",
        "must never move blobs to Archive (tierToArchive)",
    ),
    "delete rule": (
        LIFECYCLE,
        "              baseBlob: union(toCool, toCold)\n",
        "              baseBlob: union(toCool, toCold)\n              version: {\n                delete: {\n"
        "                  daysAfterCreationGreaterThan: 30\n                }\n              }\n",
        "must never delete blobs",
    ),
    "lifecycle beyond the service's prefix": (
        LIFECYCLE,
        "'${containerName}/AHDS/${workspace}/dicom/${serviceName}/'",
        "'${containerName}/'",
        "limited to the prefix",
    ),
    "role at the account": (ROLE, "  scope: container\n", "  scope: account\n", "must be scoped to the container"),
    "role for a user": (
        ROLE,
        "principalType: 'ServicePrincipal'",
        "principalType: 'User'",
        "principalType: 'ServicePrincipal'",
    ),
    "wrong role": (
        ROLE,
        "var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'",
        "var storageBlobDataContributorRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'",
        "no role assignment grants Storage Blob Data Contributor",
    ),
    "random role assignment name": (
        ROLE,
        "name: guid(container.id, principalId, storageBlobDataContributorRoleId)",
        "name: guid(container.id, principalId, storageBlobDataContributorRoleId, newGuid())",
        "arguments must be deterministic",
    ),
    "role for another principal": (
        MAIN,
        "    principalId: identity.outputs.principalId\n  }\n}\n\nmodule storageLifecycle",
        "    principalId: identity.outputs.clientId\n  }\n}\n\nmodule storageLifecycle",
        "principalId must be the managed identity's principalId output",
    ),
    "password authentication": (
        POSTGRES,
        "passwordAuth: 'Disabled'",
        "passwordAuth: 'Enabled'",
        "must disable password authentication",
    ),
    "no Entra principal": (
        POSTGRES,
        "    principalType: 'ServicePrincipal'\n",
        "    principalType: 'User'\n",
        "principalType 'ServicePrincipal'",
    ),
    "unknown env var": (
        APP,
        CLIENT_ID_ENTRY,
        CLIENT_ID_ENTRY + env_entry("DICOM_STORAGE_TIER", "'cool'"),
        "unknown environment variable DICOM_STORAGE_TIER",
    ),
    "missing env var": (APP, CLIENT_ID_ENTRY, "", "the Container App must set AZURE_CLIENT_ID"),
    "credentials in an env var": (
        APP,
        CLIENT_ID_ENTRY,
        CLIENT_ID_ENTRY + env_entry("DICOM_DATABASE_URL", "'postgresql://u:p@h/d'"),
        "DICOM_DATABASE_URL carries credentials",
    ),
    "wrong sslmode": (APP, "value: 'require'", "value: 'disable'", "DICOM_DATABASE_SSLMODE must be 'require'"),
    "database user is not the identity": (
        MAIN,
        "    databaseUser: identity.outputs.name\n",
        "    databaseUser: 'dicomlake'\n",
        "databaseUser (DICOM_DATABASE_USER) is not wired to the right output",
    ),
    "storage URL not from the storage module": (
        MAIN,
        "    storageAccountUrl: storage.outputs.blobEndpoint\n",
        "    storageAccountUrl: 'https://example.dfs.core.windows.net'\n",
        "storageAccountUrl (DICOM_STORAGE_ACCOUNT_URL) is not wired",
    ),
    "missing liveness probe": (
        APP,
        "            {\n              type: 'Liveness'\n",
        "            {\n              type: 'Liveness2'\n",
        "the container has no Liveness probe",
    ),
    "readiness probe on the wrong endpoint": (
        APP,
        "              type: 'Readiness'\n              httpGet: {\n                path: '/health/ready'",
        "              type: 'Readiness'\n              httpGet: {\n                path: '/health/live'",
        "the Readiness probe must call /health/ready",
    ),
    "probe beyond Container Apps' limits": (
        APP,
        "failureThreshold: 10",
        "failureThreshold: 60",
        "failureThreshold 60 is outside Container Apps' range 1-10",
    ),
    "HTTP ingress": (APP, "allowInsecure: false", "allowInsecure: true", "HTTPS only"),
    "no concurrency scale rule": (
        APP,
        "concurrentRequests: string(concurrentRequests)",
        "requests: string(concurrentRequests)",
        "HTTP concurrency rule",
    ),
    "parameters file with an unknown key": (
        "infra/main.parameters.json",
        '    "serviceImage": {',
        '    "storageTier": {\n      "value": "Cool"\n    },\n    "serviceImage": {',
        "parameter 'storageTier' is not declared in main.bicep",
    ),
    "parameter without description": (
        MAIN,
        "@description('Workspace segment of the data path AHDS/{workspace}/dicom/{service}/ (DICOM_WORKSPACE).')\n",
        "",
        "parameter dicomWorkspace has no @description",
    ),
    "secret in an output": (
        "infra/modules/container-apps-environment.bicep",
        "@description('Default domain of the environment.')",
        "output logKey string = workspace.listKeys().primarySharedKey\n\n"
        "@description('Default domain of the environment.')",
        "output logKey may expose a secret",
    ),
    "app not findable by azd": (
        MAIN,
        "'azd-service-name': 'dicomlake'",
        "'azd-service-name': 'api'",
        "azd-service-name",
    ),
    "root user in the image": ("Dockerfile", "USER 10001:10001", "USER root", "numeric non-root USER; found root"),
    "another Python in the image": (
        "Dockerfile",
        "FROM python:3.11-slim AS runtime",
        "FROM python:3.12-slim AS runtime",
        "base image must be python:3.11-slim",
    ),
    "shell-form entry point": (
        "Dockerfile",
        'ENTRYPOINT ["python", "-m", "dicomlake"]',
        "ENTRYPOINT python -m dicomlake",
        "ENTRYPOINT must be in exec form",
    ),
    "entry point that is not the service": (
        "Dockerfile",
        'CMD ["serve"]',
        'CMD ["devstack"]',
        "the entry point must be uvicorn on dicomlake.app:create_app or `python -m dicomlake serve`",
    ),
    "uvicorn without proxy headers": (
        "Dockerfile",
        'ENTRYPOINT ["python", "-m", "dicomlake"]\nCMD ["serve"]',
        'ENTRYPOINT ["uvicorn", "dicomlake.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8080", '
        '"--timeout-graceful-shutdown", "30"]',
        "ENTRYPOINT must pass --proxy-headers to uvicorn",
    ),
    "serve without graceful shutdown": (
        "service/dicomlake/__main__.py",
        "        timeout_graceful_shutdown=30,\n",
        "",
        "`dicomlake serve` must set timeout_graceful_shutdown",
    ),
    "graceful shutdown longer than the platform waits": (
        "infra/modules/container-app.bicep",
        "terminationGracePeriodSeconds: 40",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds (30) must exceed the graceful shutdown (30 s)",
    ),
    "extension the migrations need not allow-listed": (
        "infra/modules/postgres.bicep",
        "value: 'pg_trgm,unaccent'",
        "value: 'pg_trgm'",
        "the migrations create extensions that azure.extensions does not allow: unaccent",
    ),
    "no HEALTHCHECK": (
        "Dockerfile",
        "HEALTHCHECK --interval",
        "# HEALTHCHECK --interval",
        "HEALTHCHECK on /health/live",
    ),
    "source copied before the dependencies": (
        "Dockerfile",
        "COPY pyproject.toml ./\n",
        "COPY pyproject.toml ./\nCOPY service ./service\n",
        "dependencies must be installed (pip install -r) before the source is copied",
    ),
    "build context with the git history": (
        ".dockerignore",
        "*\n",
        ".venv*\n",
        ".git must not be sent to the image build",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_planted_policy_defect(tree: Tree, defect: str) -> None:
    name, old, new, expected = DEFECTS[defect]
    tree.edit(name, old, new)
    findings = policy_check(tree.root)
    assert any(expected in f.message for f in findings), f"{defect}:\n{messages(findings)}"


def test_env_var_check_follows_the_service_configuration(tree: Tree) -> None:
    """The list is read from config.py at test time: a variable the service starts reading may be
    set, one it stops reading may not."""
    tree.edit(APP, CLIENT_ID_ENTRY, CLIENT_ID_ENTRY + env_entry("DICOM_FUTURE_SETTING", "'soon'"))
    assert "unknown environment variable DICOM_FUTURE_SETTING" in messages(policy_check(tree.root))
    tree.edit(
        "service/dicomlake/config.py",
        '    "AZURE_CLIENT_ID":',
        '    "DICOM_FUTURE_SETTING": "A setting still to come.",\n    "AZURE_CLIENT_ID":',
    )
    assert policy_check(tree.root) == []
    tree.edit("service/dicomlake/config.py", '    "DICOM_COMPATIBILITY":', '    "DICOM_PROFILE":')
    assert "unknown environment variable DICOM_COMPATIBILITY" in messages(policy_check(tree.root))
