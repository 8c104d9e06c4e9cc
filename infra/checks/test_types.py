"""Check 2: resources, modules and values against the Azure resource type data in infra/types."""

from __future__ import annotations

import pytest
from azure_types import default_library
from common import REPO_ROOT, TYPES_DIR
from conftest import Tree, messages
from run import types_check

STORAGE = "infra/modules/storage-account.bicep"
APP = "infra/modules/container-app.bicep"
MAIN = "infra/main.bicep"


def test_real_files_type_check() -> None:
    assert types_check(REPO_ROOT) == []


def test_type_data_covers_every_resource() -> None:
    library = default_library()
    assert library.resource("Microsoft.Storage/storageAccounts", "2023-05-01") is not None
    assert library.resource("Microsoft.App/containerApps", "2024-03-01") is not None
    assert (TYPES_DIR / "README.md").read_text().count("MIT") >= 1


# (file, text, replacement, expected words in the finding)
DEFECTS: dict[str, tuple[str, str, str, str]] = {
    "misspelled property": (
        STORAGE,
        "allowSharedKeyAccess: false",
        "allowSharedKeyAcess: false",
        "unknown property 'allowSharedKeyAcess' in properties; did you mean 'allowSharedKeyAccess'?",
    ),
    "property in the wrong case": (
        STORAGE,
        "isHnsEnabled: true",
        "isHNSEnabled: true",
        "did you mean 'isHnsEnabled'?",
    ),
    "string where an integer is expected": (
        APP,
        "targetPort: 8080",
        "targetPort: '8080'",
        "properties.configuration.ingress.targetPort: expected int, got string '8080'",
    ),
    "integer parameter where a string is expected": (
        APP,
        "concurrentRequests: string(concurrentRequests)",
        "concurrentRequests: concurrentRequests",
        "http.metadata.concurrentRequests: expected string, got int concurrentRequests",
    ),
    "literal outside the allowed set": (
        STORAGE,
        "publicAccess: 'None'",
        "publicAccess: 'Private'",
        "properties.publicAccess: 'Private' is not an allowed value (allowed: 'Container', 'Blob', 'None')",
    ),
    "boolean where an integer is expected": (
        APP,
        "failureThreshold: 10",
        "failureThreshold: true",
        "failureThreshold: expected int, got boolean true",
    ),
    "read-only property": (
        STORAGE,
        "    isHnsEnabled: true\n",
        "    isHnsEnabled: true\n    provisioningState: 'Succeeded'\n",
        "property 'properties.provisioningState' is read-only",
    ),
    "missing required property": (
        "infra/modules/identity.bicep",
        "  name: name\n  location: location\n",
        "  name: name\n",
        "missing required property 'location'",
    ),
    "unknown API version": (
        STORAGE,
        "Microsoft.Storage/storageAccounts@2023-05-01",
        "Microsoft.Storage/storageAccounts@2023-06-01",
        "unknown resource type or API version; type data exists for API version(s) 2023-05-01",
    ),
    "unknown module parameter": (
        MAIN,
        "    storageAccountUrl: storage.outputs.blobEndpoint",
        "    storageAcountUrl: storage.outputs.blobEndpoint",
        "'storageAcountUrl' is not a parameter of the module; did you mean 'storageAccountUrl'?",
    ),
    "missing module parameter": (
        MAIN,
        "    databaseUser: identity.outputs.name\n",
        "",
        "missing required parameter 'databaseUser'",
    ),
    "unknown module output": (
        MAIN,
        "storageAccountUrl: storage.outputs.blobEndpoint",
        "storageAccountUrl: storage.outputs.blobUrl",
        "module storage has no output 'blobUrl'",
    ),
    "undeclared identifier": (
        MAIN,
        "    logLevel: logLevel\n",
        "    logLevel: logLevl\n",
        "'logLevl' is not declared; did you mean 'logLevel'?",
    ),
    "value outside the module's @allowed list": (
        MAIN,
        "    computeTier: postgresSkuTier",
        "    computeTier: 'Burstible'",
        "computeTier: 'Burstible' is not in the module's @allowed list",
    ),
    "@allowed lists that drifted apart": (
        MAIN,
        "  'Standard_RAGZRS'\n])\nparam storageSkuName",
        "  'Standard_RAGZRS'\n  'Premium_LRS'\n])\nparam storageSkuName",
        "parameter replication: 'Premium_LRS' is not in the module's @allowed list",
    ),
    "module deployed at the wrong scope": (
        MAIN,
        "module monitoring 'modules/monitoring.bicep' = {\n  name: 'dicomlake-monitoring'\n  scope: rg\n",
        "module monitoring 'modules/monitoring.bicep' = {\n  name: 'dicomlake-monitoring'\n",
        "deployed at subscription scope but the file's targetScope is resourceGroup",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_planted_type_defect(tree: Tree, defect: str) -> None:
    name, old, new, expected = DEFECTS[defect]
    tree.edit(name, old, new)
    findings = types_check(tree.root)
    assert findings, f"{defect}: the type check passed"
    assert any(expected in f.message and f.path.endswith(name.rsplit("/", 1)[-1]) for f in findings), messages(findings)
