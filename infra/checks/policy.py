"""Policy tests on the parsed deployment: the rules this project sets for itself, beyond types.

Each ``check_*`` function returns findings; :func:`check_policy` runs them all. Resources are found by
type and modules by the file they deploy, so the rules hold however the files are arranged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from bicep import (
    Access,
    Arr,
    BicepFile,
    Bool,
    Call,
    Int,
    Interp,
    Module,
    Node,
    Obj,
    Ref,
    Resource,
    Str,
    walk,
)
from common import Finding, relative
from deployment import (
    Stage,
    development_python,
    dockerignore_excludes,
    environment_variables,
    load_json,
    parse_all,
    parse_dockerfile,
    read_dockerignore,
)

STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
SERVICE_PORT = 8080
#: variables the Container App must set, with the literal value where one is required
REQUIRED_ENV: dict[str, str | None] = {
    "DICOM_STORAGE_ACCOUNT_URL": None,
    "DICOM_STORAGE_CONTAINER": None,
    "DICOM_WORKSPACE": None,
    "DICOM_SERVICE_NAME": None,
    "DICOM_DATABASE_HOST": None,
    "DICOM_DATABASE_NAME": None,
    "DICOM_DATABASE_USER": None,
    "DICOM_DATABASE_SSLMODE": "require",
    "DICOM_HOST": "0.0.0.0",
    "DICOM_PORT": str(SERVICE_PORT),
    "DICOM_LOG_LEVEL": None,
    "DICOM_COMPATIBILITY": None,
    "AZURE_CLIENT_ID": None,
}
#: variables that carry credentials: the deployment uses the managed identity instead
SECRET_ENV = {"DICOM_DATABASE_URL", "DICOM_STORAGE_CONNECTION_STRING"}
#: probe type -> health endpoint
PROBES = {"Startup": "/health/ready", "Liveness": "/health/live", "Readiness": "/health/ready"}
#: Container Apps probe limits (the type data leaves them open)
PROBE_LIMITS = {
    "failureThreshold": (1, 10),
    "initialDelaySeconds": (0, 60),
    "periodSeconds": (1, 240),
    "timeoutSeconds": (1, 240),
    "successThreshold": (1, 10),
}
SECRET_WORDS = re.compile(r"key|secret|password|connectionstring|token|sas", re.IGNORECASE)
AZD_OUTPUTS = ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_CONTAINER_REGISTRY_ENDPOINT")

RESOURCE_GROUP = "microsoft.resources/resourcegroups"
STORAGE_ACCOUNT = "microsoft.storage/storageaccounts"
CONTAINER = "microsoft.storage/storageaccounts/blobservices/containers"
MANAGEMENT_POLICY = "microsoft.storage/storageaccounts/managementpolicies"
ROLE_ASSIGNMENT = "microsoft.authorization/roleassignments"
IDENTITY = "microsoft.managedidentity/userassignedidentities"
POSTGRES = "microsoft.dbforpostgresql/flexibleservers"
POSTGRES_ADMIN = "microsoft.dbforpostgresql/flexibleservers/administrators"
POSTGRES_DATABASE = "microsoft.dbforpostgresql/flexibleservers/databases"
CONTAINER_APP = "microsoft.app/containerapps"


@dataclass
class Deployment:
    root: Path
    files: dict[Path, BicepFile]
    main: BicepFile

    def rel(self, file: BicepFile) -> str:
        return relative(file.path, self.root)

    def resources(self, resource_type: str, *, existing: bool = False) -> Iterator[tuple[BicepFile, Resource]]:
        for file in self.files.values():
            for resource in file.resources.values():
                if resource.type.lower() == resource_type and resource.existing == existing:
                    yield file, resource

    def module_file(self, file: BicepFile, module: Module) -> BicepFile | None:
        return self.files.get((file.path.parent / module.path).resolve())

    def deployments_of(self, target: BicepFile) -> list[Module]:
        """The modules of main.bicep that deploy ``target``."""
        return [m for m in self.main.modules.values() if self.module_file(self.main, m) is target]

    def file_with(self, resource_type: str, *, existing: bool = False) -> BicepFile | None:
        return next((f for f, _ in self.resources(resource_type, existing=existing)), None)


class _Report:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.findings: list[Finding] = []

    def __call__(self, where: BicepFile | str, line: int, message: str) -> None:
        path = where if isinstance(where, str) else self.deployment.rel(where)
        self.findings.append(Finding(path, line, message))


# ---- helpers ---------------------------------------------------------------------------------------


def get(node: Node | None, path: str) -> Node | None:
    """``obj.a.b`` for a dotted path through object literals."""
    for key in path.split("."):
        if not isinstance(node, Obj):
            return None
        node = node.get(key)
    return node


def literal(file: BicepFile, node: Node | None) -> str | int | bool | None:
    """The literal value of ``node`` (variables followed), or None if it is computed."""
    if node is None:
        return None
    node = file.resolve(node)
    if isinstance(node, Str | Int | Bool):
        return node.value
    return None


def argument(module: Module, name: str) -> Node | None:
    return get(module.obj, f"params.{name}")


def text(node: Node | None) -> str:
    return " ".join(node.text.split()) if node is not None else ""


def is_output_of(node: Node | None, module_symbols: set[str], output: str) -> bool:
    return (
        isinstance(node, Access)
        and isinstance(node.base, Ref)
        and node.base.name in module_symbols
        and node.members == ("outputs", output)
    )


# ---- storage -----------------------------------------------------------------------------------------

STORAGE_SETTINGS: dict[str, tuple[Callable[[object], bool], str]] = {
    "kind": (lambda v: v == "StorageV2", "kind: 'StorageV2'"),
    "properties.isHnsEnabled": (lambda v: v is True, "isHnsEnabled: true (Data Lake Storage Gen2)"),
    "properties.minimumTlsVersion": (lambda v: v in ("TLS1_2", "TLS1_3"), "minimumTlsVersion: 'TLS1_2' or newer"),
    "properties.allowBlobPublicAccess": (lambda v: v is False, "allowBlobPublicAccess: false (no anonymous access)"),
    "properties.allowSharedKeyAccess": (
        lambda v: v is False,
        "allowSharedKeyAccess: false (shared key must be disabled; the service uses its managed identity)",
    ),
    "properties.supportsHttpsTrafficOnly": (lambda v: v is True, "supportsHttpsTrafficOnly: true (HTTPS only)"),
}


def check_storage(d: Deployment, report: _Report) -> None:
    accounts = list(d.resources(STORAGE_ACCOUNT))
    if not accounts:
        report(d.main, 0, "no new storage account is defined (the new-account path is missing)")
    for file, account in accounts:
        for path, (ok, rule) in STORAGE_SETTINGS.items():
            value = literal(file, get(account.obj, path))
            if not ok(value):
                node = get(account.obj, path)
                line = node.line if node is not None else account.line
                report(file, line, f"storage account '{account.symbol}' must set {rule}; found {value!r}")
        if account.condition is not None:
            report(
                file,
                account.line,
                f"storage account '{account.symbol}': use a conditional module, not a resource-level if "
                "(checkov cannot see it)",
            )
        if not any(f is file for f, _ in d.resources(CONTAINER)):
            report(file, account.line, "the new storage account's container (file system) is not created")
        for module in d.deployments_of(file):
            if module.condition is None:
                report(
                    d.main,
                    module.line,
                    f"module {module.symbol} must be conditional: a customer may bring their own account",
                )
    for file, container in d.resources(CONTAINER):
        access = literal(file, get(container.obj, "properties.publicAccess"))
        if access not in (None, "None"):
            report(
                file, container.line, f"container '{container.symbol}' must have publicAccess 'None'; found {access!r}"
            )


def check_role_assignments(d: Deployment, report: _Report) -> None:
    storage_roles: list[tuple[BicepFile, Resource]] = []
    for file, role in d.resources(ROLE_ASSIGNMENT):
        obj = role.obj
        principal_type = literal(file, get(obj, "properties.principalType"))
        if principal_type != "ServicePrincipal":
            report(
                file,
                role.line,
                f"role assignment '{role.symbol}' must set principalType: 'ServicePrincipal'; found {principal_type!r}",
            )
        name = get(obj, "name")
        if not (isinstance(name, Call) and name.name == "guid"):
            report(file, role.line, f"role assignment '{role.symbol}' must be named with guid(...) (deterministic)")
        elif any(isinstance(n, Call) and n.name in ("new_guid", "utc_now") for n in walk(name)):
            report(file, role.line, f"role assignment '{role.symbol}': guid(...) arguments must be deterministic")
        definition = get(obj, "properties.roleDefinitionId")
        role_ids = (
            {str(literal(file, n)) for n in walk(definition) if isinstance(literal(file, n), str)}
            if definition is not None
            else set()
        )
        if STORAGE_BLOB_DATA_CONTRIBUTOR in role_ids:
            storage_roles.append((file, role))
    if not storage_roles:
        report(d.main, 0, f"no role assignment grants Storage Blob Data Contributor ({STORAGE_BLOB_DATA_CONTRIBUTOR})")
    for file, role in storage_roles:
        obj = role.obj
        scope = get(obj, "scope")
        target = file.resources.get(scope.name) if isinstance(scope, Ref) else None
        if target is None or target.type.lower() != CONTAINER:
            report(
                file,
                role.line,
                f"Storage Blob Data Contributor '{role.symbol}' must be scoped to the container (least "
                f"privilege); scope is {text(scope) or 'the deployment scope'}",
            )
        name = get(obj, "name")
        principal = get(obj, "properties.principalId")
        names = {text(a) for a in name.args} if isinstance(name, Call) else set()
        if not (isinstance(scope, Ref) and f"{scope.name}.id" in names and text(principal) in names):
            report(
                file,
                role.line,
                f"role assignment '{role.symbol}': guid(...) must include the container id and the principal id",
            )
        if not (isinstance(principal, Ref) and principal.name in file.params):
            report(file, role.line, f"role assignment '{role.symbol}': principalId must come from a parameter")
            continue
        identity_modules = _identity_modules(d)
        for module in d.deployments_of(file):
            if not is_output_of(argument(module, principal.name), identity_modules, "principalId"):
                report(
                    d.main,
                    module.line,
                    f"module {module.symbol}: {principal.name} must be the managed identity's principalId output",
                )


def _identity_modules(d: Deployment) -> set[str]:
    identity_file = d.file_with(IDENTITY)
    return {m.symbol for m in d.deployments_of(identity_file)} if identity_file else set()


def check_lifecycle(d: Deployment, report: _Report) -> None:
    for file, policy in d.resources(MANAGEMENT_POLICY):
        # the rule may be assembled from variables: look at the whole file
        roots = [policy.body, *(v.value for v in file.variables.values())]
        for root in roots:
            for node in walk(root):
                if isinstance(node, Obj):
                    for prop in node.props:
                        if prop.key == "tierToArchive":
                            report(
                                file,
                                prop.line,
                                "lifecycle rule must never move blobs to Archive (tierToArchive): "
                                "the service cannot read archived blobs",
                            )
                        if prop.key == "delete":
                            report(
                                file,
                                prop.line,
                                "lifecycle rule must never delete blobs (delete action): "
                                "deletion belongs to the service",
                            )
        rules = get(policy.obj, "properties.policy.rules")
        if not isinstance(rules, Arr) or not rules.items:
            report(file, policy.line, "lifecycle policy has no rules")
            continue
        for rule in rules.items:
            prefixes = get(rule, "definition.filters.prefixMatch")
            items = prefixes.items if isinstance(prefixes, Arr) else ()
            pattern = re.compile(r"\$\{\w+\}/AHDS/\$\{\w+\}/dicom/\$\{\w+\}/")
            if not items or not all(isinstance(i, Interp) and pattern.fullmatch(i.raw) for i in items):
                report(
                    file,
                    rule.line,
                    "lifecycle rule must be limited to the prefix '${container}/AHDS/${workspace}/dicom/${service}/'",
                )
            types = get(rule, "definition.filters.blobTypes")
            if not (isinstance(types, Arr) and [literal(file, t) for t in types.items] == ["blockBlob"]):
                report(file, rule.line, "lifecycle rule must apply to blockBlob only")
        for module in d.deployments_of(file):
            if module.condition is None:
                report(
                    d.main,
                    module.line,
                    f"module {module.symbol}: the lifecycle policy must be optional (a conditional module)",
                )


# ---- PostgreSQL ----------------------------------------------------------------------------------------


def check_postgres(d: Deployment, report: _Report) -> None:
    servers = list(d.resources(POSTGRES))
    if not servers:
        report(d.main, 0, "no PostgreSQL flexible server is defined")
    for file, server in servers:
        obj = server.obj
        if literal(file, get(obj, "properties.authConfig.activeDirectoryAuth")) != "Enabled":
            report(
                file,
                server.line,
                "PostgreSQL must enable Microsoft Entra authentication (authConfig.activeDirectoryAuth: 'Enabled')",
            )
        if literal(file, get(obj, "properties.authConfig.passwordAuth")) != "Disabled":
            report(
                file,
                server.line,
                "PostgreSQL must disable password authentication (authConfig.passwordAuth: 'Disabled')",
            )
        for key in ("administratorLogin", "administratorLoginPassword"):
            if get(obj, f"properties.{key}") is not None:
                report(file, server.line, f"PostgreSQL must not set {key}: no password exists")
        admins = [r for r in file.resources.values() if r.type.lower() == POSTGRES_ADMIN and not r.existing]
        if not admins:
            report(
                file,
                server.line,
                "the managed identity must be registered as the server's Microsoft Entra principal (administrators)",
            )
        for admin in admins:
            if literal(file, get(admin.obj, "properties.principalType")) != "ServicePrincipal":
                report(file, admin.line, "the Entra principal must have principalType 'ServicePrincipal'")
        if not any(r.type.lower() == POSTGRES_DATABASE and not r.existing for r in file.resources.values()):
            report(file, server.line, "the database the service uses is not created")
        _check_postgres_principal(d, file, admins, report)
        _check_postgres_extensions(d, file, server, report)


POSTGRES_CONFIGURATION = "microsoft.dbforpostgresql/flexibleservers/configurations"


def migration_extensions(root: Path) -> set[str]:
    """Extensions the service's migrations create (CREATE EXTENSION [IF NOT EXISTS] name)."""
    pattern = re.compile(r"CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?([A-Za-z0-9_]+)", re.IGNORECASE)
    found: set[str] = set()
    for sql in sorted((root / "service" / "dicomlake" / "index" / "migrations").glob("*.sql")):
        found |= {m.lower() for m in pattern.findall(sql.read_text())}
    return found


def _check_postgres_extensions(d: Deployment, file: BicepFile, server: Resource, report: _Report) -> None:
    """Azure Database for PostgreSQL refuses CREATE EXTENSION unless the extension is allow-listed in the
    server parameter azure.extensions: every extension the migrations create must be listed."""
    needed = migration_extensions(d.root)
    if not needed:
        return
    allowed: set[str] = set()
    for r in file.resources.values():
        if r.type.lower() == POSTGRES_CONFIGURATION and literal(file, get(r.obj, "name")) == "azure.extensions":
            value = literal(file, get(r.obj, "properties.value"))
            if isinstance(value, str):
                allowed |= {v.strip().lower() for v in value.split(",") if v.strip()}
    missing = sorted(needed - allowed)
    if missing:
        report(
            file,
            server.line,
            f"the migrations create extensions that azure.extensions does not allow: {', '.join(missing)}",
        )


def _check_postgres_principal(d: Deployment, file: BicepFile, admins: list[Resource], report: _Report) -> None:
    identity_modules = _identity_modules(d)
    for admin in admins:
        principal_name = get(admin.obj, "properties.principalName")
        if not (isinstance(principal_name, Ref) and principal_name.name in file.params):
            report(file, admin.line, "the Entra principal's name must come from a parameter")
            continue
        for module in d.deployments_of(file):
            if not is_output_of(argument(module, principal_name.name), identity_modules, "name"):
                report(
                    d.main,
                    module.line,
                    f"module {module.symbol}: {principal_name.name} must be the managed identity's name output",
                )


# ---- Container App -------------------------------------------------------------------------------------


def check_container_app(d: Deployment, report: _Report, environment: set[str]) -> None:
    apps = list(d.resources(CONTAINER_APP))
    if len(apps) != 1:
        report(d.main, 0, f"expected exactly one Container App, found {len(apps)}")
        return
    file, app = apps[0]
    obj = app.obj
    if literal(file, get(obj, "identity.type")) != "UserAssigned":
        report(
            file,
            app.line,
            "the Container App must run as its user-assigned managed identity (identity.type 'UserAssigned')",
        )
    if literal(file, get(obj, "properties.configuration.ingress.allowInsecure")) is not False:
        report(file, app.line, "ingress must be HTTPS only (allowInsecure: false)")
    if literal(file, get(obj, "properties.configuration.ingress.targetPort")) != SERVICE_PORT:
        report(file, app.line, f"ingress targetPort must be {SERVICE_PORT}")
    if get(obj, "properties.configuration.secrets") is not None:
        report(file, app.line, "the Container App must not hold secrets: the service uses its managed identity")
    registries = get(obj, "properties.configuration.registries")
    for registry in registries.items if isinstance(registries, Arr) else ():
        if get(registry, "identity") is None or get(registry, "passwordSecretRef") is not None:
            report(
                file,
                registry.line,
                "the registry must be pulled from with the managed identity (identity, no password)",
            )
    containers = get(obj, "properties.template.containers")
    if not (isinstance(containers, Arr) and len(containers.items) == 1):
        report(file, app.line, "expected exactly one container in the template")
        return
    container = containers.items[0]
    for key in ("resources.cpu", "resources.memory", "image"):
        if get(container, key) is None:
            report(file, container.line, f"the container must set {key}")
    _check_probes(file, container, report)
    _check_scale(file, obj, report)
    _check_env(d, file, container, report, environment)


def _check_probes(file: BicepFile, container: Node, report: _Report) -> None:
    probes = get(container, "probes")
    found: dict[str, Node] = {}
    for probe in probes.items if isinstance(probes, Arr) else ():
        kind = literal(file, get(probe, "type"))
        if isinstance(kind, str):
            if kind in found:
                report(file, probe.line, f"duplicate {kind} probe")
            found[kind] = probe
        for key, (low, high) in PROBE_LIMITS.items():
            value = literal(file, get(probe, key))
            if isinstance(value, int) and not low <= value <= high:
                report(file, probe.line, f"{kind} probe {key} {value} is outside Container Apps' range {low}-{high}")
    for kind, path in PROBES.items():
        wanted = found.get(kind)
        if wanted is None:
            report(file, container.line, f"the container has no {kind} probe (expected httpGet {path})")
            continue
        if literal(file, get(wanted, "httpGet.path")) != path:
            report(file, wanted.line, f"the {kind} probe must call {path}")
        if literal(file, get(wanted, "httpGet.port")) != SERVICE_PORT:
            report(file, wanted.line, f"the {kind} probe must use port {SERVICE_PORT}")


def _check_scale(file: BicepFile, obj: Obj | None, report: _Report) -> None:
    scale = get(obj, "properties.template.scale")
    for key in ("minReplicas", "maxReplicas"):
        if get(scale, key) is None:
            report(file, obj.line if obj else 0, f"scale must set {key}")
    rules = get(scale, "rules")
    http = [r for r in (rules.items if isinstance(rules, Arr) else ()) if get(r, "http.metadata.concurrentRequests")]
    if not http:
        report(
            file, obj.line if obj else 0, "scale must have an HTTP concurrency rule (http.metadata.concurrentRequests)"
        )


def _check_env(d: Deployment, file: BicepFile, container: Node, report: _Report, environment: set[str]) -> None:
    env = get(container, "env")
    if not isinstance(env, Arr):
        report(file, container.line, "the container's env must be a literal list of name/value pairs")
        return
    values: dict[str, Node] = {}
    for entry in env.items:
        name = literal(file, get(entry, "name"))
        if not isinstance(name, str):
            report(file, entry.line, "every environment variable name must be a literal")
            continue
        if name in values:
            report(file, entry.line, f"environment variable {name} is set twice")
        if get(entry, "secretRef") is not None:
            report(file, entry.line, f"environment variable {name} must not come from a secret")
        if name in SECRET_ENV:
            report(file, entry.line, f"environment variable {name} carries credentials; use the managed identity")
        if name not in environment:
            report(
                file,
                entry.line,
                f"unknown environment variable {name}: the service does not read it "
                "(not in ENVIRONMENT_VARIABLES of service/dicomlake/config.py)",
            )
        value = get(entry, "value")
        if value is not None:
            values[name] = value
    for name, required in REQUIRED_ENV.items():
        if name not in values:
            report(file, env.line, f"the Container App must set {name}")
        elif required is not None and literal(file, values[name]) != required:
            report(file, values[name].line, f"{name} must be '{required}'")
    _check_env_wiring(d, file, values, report)


def _check_env_wiring(d: Deployment, file: BicepFile, values: dict[str, Node], report: _Report) -> None:
    """Follow each Azure-provided value from the app's parameter to what main.bicep passes it."""
    identity = _identity_modules(d)
    reference_file = next(
        (f for f in d.files.values() if "blobEndpoint" in f.outputs and f.resources_of_type(CONTAINER)), None
    )
    storage_modules = {m.symbol for m in d.deployments_of(reference_file)} if reference_file else set()
    if reference_file is None:
        report(d.main, 0, "no storage module outputs blobEndpoint")
    else:
        endpoint = reference_file.outputs["blobEndpoint"].value
        if not (isinstance(endpoint, Interp) and re.fullmatch(r"https://\$\{[^}]+\}\.blob\..+", endpoint.raw)):
            report(
                reference_file,
                reference_file.outputs["blobEndpoint"].line,
                "blobEndpoint must be https://<account>.blob.<suffix>",
            )
    postgres_file = d.file_with(POSTGRES)
    postgres_modules = {m.symbol for m in d.deployments_of(postgres_file)} if postgres_file else set()
    expected: dict[str, Callable[[Node | None], bool]] = {
        "DICOM_STORAGE_ACCOUNT_URL": lambda n: is_output_of(n, storage_modules, "blobEndpoint"),
        "AZURE_CLIENT_ID": lambda n: is_output_of(n, identity, "clientId"),
        "DICOM_DATABASE_USER": lambda n: is_output_of(n, identity, "name"),
        "DICOM_DATABASE_HOST": lambda n: is_output_of(n, postgres_modules, "host"),
    }
    app_modules = d.deployments_of(file)
    if not app_modules:
        report(d.main, 0, "main.bicep does not deploy the Container App")
    for name, ok in expected.items():
        value = values.get(name)
        if not (isinstance(value, Ref) and value.name in file.params):
            if value is not None:
                report(file, value.line, f"{name} must come from a parameter wired in main.bicep")
            continue
        for module in app_modules:
            if not ok(argument(module, value.name)):
                report(
                    d.main,
                    module.line,
                    f"module {module.symbol}: {value.name} ({name}) is not wired to the right output",
                )
    # the same container, workspace and service everywhere they appear
    for name, lifecycle_param in (
        ("DICOM_STORAGE_CONTAINER", "containerName"),
        ("DICOM_WORKSPACE", "workspace"),
        ("DICOM_SERVICE_NAME", "serviceName"),
    ):
        value = values.get(name)
        if not isinstance(value, Ref):
            continue
        app_arguments = {text(argument(m, value.name)) for m in app_modules}
        others = {
            text(argument(m, lifecycle_param)) for f, _ in d.resources(MANAGEMENT_POLICY) for m in d.deployments_of(f)
        }
        if others and others != app_arguments:
            report(
                d.main,
                0,
                f"{name}: the lifecycle policy and the app must use the same value "
                f"({', '.join(sorted(others | app_arguments))})",
            )


# ---- parameters, outputs and azd -----------------------------------------------------------------------


def check_parameters(d: Deployment, report: _Report) -> None:
    for file in d.files.values():
        for param in file.params.values():
            if param.decorator("description") is None:
                report(file, param.line, f"parameter {param.name} has no @description")
            if param.decorator("secure") is not None:
                report(file, param.line, f"parameter {param.name} is @secure: no secret should be needed")
    for output in d.main.outputs.values():
        if not any(dec.name == "description" for dec in output.decorators):
            report(d.main, output.line, f"output {output.name} has no @description")
    for file in d.files.values():
        for output in file.outputs.values():
            calls = [n for n in walk(output.value) if isinstance(n, Call) and n.name.lower().startswith("list")]
            if calls or SECRET_WORDS.search(output.name):
                report(file, output.line, f"output {output.name} may expose a secret")
    params_path = d.root / "infra" / "main.parameters.json"
    rel = relative(params_path, d.root)
    try:
        data = load_json(params_path)
    except (OSError, ValueError) as error:
        report(rel, 0, f"cannot read the parameters file: {error}")
        return
    given = data.get("parameters", {}) if isinstance(data, dict) else {}
    for name, entry in given.items():
        declared = d.main.params.get(name)
        if declared is None:
            report(rel, 0, f"parameter '{name}' is not declared in main.bicep")
            continue
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, str) and "${" in value:
            continue  # filled in by azd from its environment
        kinds = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}
        expected = kinds.get(declared.type)
        if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            report(rel, 0, f"parameter '{name}' must be {declared.type}, got {value!r}")
    for param in d.main.params.values():
        if param.default is None and param.name not in given:
            report(rel, 0, f"required parameter '{param.name}' of main.bicep is missing")


def check_azd(d: Deployment, report: _Report) -> None:
    for name in AZD_OUTPUTS:
        if name not in d.main.outputs:
            report(d.main, 0, f"main.bicep must output {name} for azd")
    path = d.root / "azure.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        report("azure.yaml", 0, f"cannot read azure.yaml: {error}")
        return
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict) or not services:
        report("azure.yaml", 0, "azure.yaml declares no service")
        return
    infra = data.get("infra", {}) or {}
    if (infra.get("path", "infra"), infra.get("module", "main")) != ("infra", "main"):
        report("azure.yaml", 0, "azure.yaml infra must be path 'infra', module 'main'")
    app_tags = set()
    for file, _app in d.resources(CONTAINER_APP):
        for module in d.deployments_of(file):
            app_tags |= {
                m.group(1) for m in re.finditer(r"'azd-service-name'\s*:\s*'([^']+)'", text(argument(module, "tags")))
            }
    for name, service in services.items():
        if not isinstance(service, dict) or service.get("host") != "containerapp":
            report("azure.yaml", 0, f"service {name} must have host: containerapp")
            continue
        if name not in app_tags:
            report(d.main, 0, f"the Container App must be tagged 'azd-service-name': '{name}' for azd")
        if f"SERVICE_{name.upper()}_URI" not in d.main.outputs:
            report(d.main, 0, f"main.bicep must output SERVICE_{name.upper()}_URI")
        project = d.root / str(service.get("project", "."))
        docker = service.get("docker", {}) or {}
        dockerfile = project / str(docker.get("path", "Dockerfile"))
        if not dockerfile.is_file():
            report("azure.yaml", 0, f"service {name}: {relative(dockerfile, d.root)} does not exist")
    if d.main.target_scope == "subscription":
        groups = [r for r in d.main.resources.values() if r.type.lower() == RESOURCE_GROUP]
        if not any("'azd-env-name'" in text(d.main.resolve(get(g.obj, "tags") or Obj(0, "", ()))) for g in groups):
            report(d.main, 0, "the resource group must carry the azd-env-name tag")


# ---- Dockerfile -------------------------------------------------------------------------------------


def check_dockerfile(root: Path, report: _Report, app_grace: int | None) -> None:
    path = root / "Dockerfile"
    if not path.is_file():
        report("Dockerfile", 0, "no Dockerfile")
        return
    stages = parse_dockerfile(path)
    python = development_python(root)
    if len(stages) < 2:
        report("Dockerfile", 0, "the build must be multi-stage (build, then a runtime image)")
    for stage in stages:
        base = stage.image.split("@", 1)[0]
        named = {s.name for s in stages if s.name}
        if base in named:
            continue
        if base != f"python:{python}-slim":
            report(
                "Dockerfile",
                stage.line,
                f"base image must be python:{python}-slim (the development Python), found {stage.image}",
            )
    if not stages:
        return
    _check_build_order(stages, report)
    final = stages[-1]
    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1].arguments.strip()):
        found = users[-1].arguments if users else "none (root)"
        report(
            "Dockerfile",
            users[-1].line if users else final.line,
            f"the runtime must run as a numeric non-root USER; found {found}",
        )
    _check_entry_point(root, final, report, app_grace)
    checks = [i for i in final.instructions if i.keyword == "HEALTHCHECK"]
    if not checks or "/health/live" not in checks[-1].arguments:
        report("Dockerfile", final.line, "the runtime image must have a HEALTHCHECK on /health/live")
    if not any(i.keyword == "EXPOSE" and str(SERVICE_PORT) in i.arguments for i in final.instructions):
        report("Dockerfile", final.line, f"the runtime image must EXPOSE {SERVICE_PORT}")
    patterns = read_dockerignore(root / ".dockerignore")
    if not patterns:
        report(".dockerignore", 0, "missing or empty .dockerignore")
    for path_name in (
        ".git/config",
        ".venv/bin/python",
        ".venv-infra/bin/python",
        "tests/conftest.py",
        "infra/main.bicep",
        "node_modules/x",
    ):
        if patterns and not dockerignore_excludes(patterns, path_name):
            report(".dockerignore", 0, f"{path_name.split('/')[0]} must not be sent to the image build")
    for path_name in ("pyproject.toml", "README.md", "service/dicomlake/config.py"):
        if dockerignore_excludes(patterns, path_name):
            report(".dockerignore", 0, f"{path_name} is needed by the image build but excluded")


UVICORN_FLAGS = ("--factory", "--proxy-headers", "--forwarded-allow-ips", f"--port {SERVICE_PORT}", "--host 0.0.0.0")
SERVE_ARGUMENTS = (
    "factory=True",
    "proxy_headers=True",
    "forwarded_allow_ips=",
    "host=settings.host",
    "port=settings.port",
)


def _check_entry_point(root: Path, final: Stage, report: _Report, app_grace: int | None) -> None:
    """An exec-form entry point serving the app factory with proxy headers and graceful shutdown:
    either uvicorn with the flags, or ``python -m dicomlake serve`` (whose uvicorn call is checked in
    the service's source, with DICOM_HOST/DICOM_PORT set in the image)."""
    entries = [i for i in final.instructions if i.keyword == "ENTRYPOINT"]
    commands = [i for i in final.instructions if i.keyword == "CMD"]
    entry = entries[-1] if entries else None
    line = entry.line if entry else final.line
    form = entry.exec_form if entry else None
    if form is None:
        report("Dockerfile", line, "ENTRYPOINT must be in exec form (a JSON array)")
        return
    cmd = commands[-1].exec_form if commands else []
    if cmd is None:
        report("Dockerfile", commands[-1].line, "CMD must be in exec form (a JSON array)")
        return
    command = " ".join(form + cmd)
    grace: int | None = None
    if command.startswith("uvicorn "):
        if "dicomlake.app:create_app" not in command:
            report("Dockerfile", line, "ENTRYPOINT must serve dicomlake.app:create_app")
        for flag in UVICORN_FLAGS:
            if flag not in command:
                report("Dockerfile", line, f"ENTRYPOINT must pass {flag} to uvicorn")
        found = re.search(r"--timeout-graceful-shutdown[ =](\d+)", command)
        if found is None:
            report("Dockerfile", line, "ENTRYPOINT must pass --timeout-graceful-shutdown to uvicorn")
        grace = int(found.group(1)) if found else None
    elif re.fullmatch(r"(python3?|/opt/\S+/bin/python3?) -m dicomlake serve", command):
        environment = " ".join(i.arguments for i in final.instructions if i.keyword == "ENV")
        for setting in ("DICOM_HOST=0.0.0.0", f"DICOM_PORT={SERVICE_PORT}"):
            if setting not in environment:
                report("Dockerfile", line, f"the image must set ENV {setting} for `dicomlake serve`")
        source = (root / "service/dicomlake/__main__.py").read_text(encoding="utf-8")
        serve = source[source.find("def serve(") :]
        serve = serve[: serve.find("\ndef ", 1)]
        for argument in SERVE_ARGUMENTS:
            if argument not in serve.replace(" ", ""):
                report("service/dicomlake/__main__.py", 0, f"`dicomlake serve` must call uvicorn with {argument}")
        found = re.search(r"timeout_graceful_shutdown=(\d+)", serve)
        if found is None:
            report("service/dicomlake/__main__.py", 0, "`dicomlake serve` must set timeout_graceful_shutdown")
        grace = int(found.group(1)) if found else None
    else:
        report(
            "Dockerfile",
            line,
            "the entry point must be uvicorn on dicomlake.app:create_app or `python -m dicomlake serve`; "
            f"found {command}",
        )
    if grace is not None and app_grace is not None and app_grace <= grace:
        report(
            "Dockerfile",
            line,
            f"the Container App's terminationGracePeriodSeconds ({app_grace}) must exceed the graceful "
            f"shutdown ({grace} s)",
        )


def _check_build_order(stages: list[Stage], report: _Report) -> None:
    """Dependencies are installed before the service's source is copied (layer caching)."""
    for stage in stages:
        copy_source = next(
            (
                i
                for i in stage.instructions
                if i.keyword == "COPY" and re.search(r"(^|\s)\.?/?service/?(\s|$)", i.arguments)
            ),
            None,
        )
        if copy_source is None:
            continue
        installs = [
            i
            for i in stage.instructions
            if i.keyword == "RUN" and "pip install" in i.arguments and " -r " in i.arguments
        ]
        if not installs or installs[0].line > copy_source.line:
            report(
                "Dockerfile",
                copy_source.line,
                "dependencies must be installed (pip install -r) before the source is copied",
            )


# ---- all -----------------------------------------------------------------------------------------------


def check_policy(root: Path) -> list[Finding]:
    files, parse_findings = parse_all(root)
    if parse_findings:
        return parse_findings
    main = files.get((root / "infra" / "main.bicep").resolve())
    if main is None:
        return [Finding("infra/main.bicep", 0, "missing")]
    d = Deployment(root, files, main)
    report = _Report(d)
    environment = environment_variables(root)
    check_storage(d, report)
    check_role_assignments(d, report)
    check_lifecycle(d, report)
    check_postgres(d, report)
    check_container_app(d, report, environment)
    check_parameters(d, report)
    check_azd(d, report)
    grace = None
    for file, app in d.resources(CONTAINER_APP):
        value = literal(file, get(app.obj, "properties.template.terminationGracePeriodSeconds"))
        grace = value if isinstance(value, int) else None
    check_dockerfile(root, report, grace)
    return sorted(set(report.findings))
