"""Service configuration, read once from environment variables and validated at start-up.

Every variable the service reads is declared in :data:`ENVIRONMENT_VARIABLES`; ``docs/configuration.md``
documents the same list and a test keeps the two in step (so do the infra checks for the Bicep app
settings). Messages are written for the person deploying the service, not for a Python developer.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dicomlake.errors import ConfigurationError

DEFAULT_PARTITION = "Microsoft.Default"

#: name -> one-line description. The single list of variables the service reads.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "DICOM_STORAGE_ACCOUNT_URL": "Blob endpoint of the storage account, e.g. https://acct.blob.core.windows.net "
    "(authenticated with DefaultAzureCredential / managed identity).",
    "DICOM_STORAGE_CONNECTION_STRING": "Storage connection string (Azurite or shared key). Used instead of the "
    "account URL when set.",
    "DICOM_STORAGE_CONTAINER": "Container (file system) that holds the data. Default: dicom.",
    "DICOM_STORAGE_CREATE_CONTAINER": "Create the container at start-up if missing (true/false). Default: false, "
    "or true with a connection string.",
    "DICOM_WORKSPACE": "Workspace name, the second segment of AHDS/{workspace}/dicom/{service}/. Default: workspace.",
    "DICOM_SERVICE_NAME": "Service name, the fourth segment of AHDS/{workspace}/dicom/{service}/. Default: dicom.",
    "DICOM_DATABASE_URL": "PostgreSQL URL with credentials, e.g. postgresql://user:pw@host:5432/dicomlake.",
    "DICOM_DATABASE_HOST": "PostgreSQL host for Microsoft Entra token authentication (used when no URL is given).",
    "DICOM_DATABASE_PORT": "PostgreSQL port for token authentication. Default: 5432.",
    "DICOM_DATABASE_NAME": "Database name for token authentication. Default: dicomlake.",
    "DICOM_DATABASE_USER": "Database role for token authentication (the managed identity's name in PostgreSQL).",
    "DICOM_DATABASE_SSLMODE": "sslmode for token authentication: require, verify-full or disable. Default: require.",
    "DICOM_DATABASE_POOL_MAX": "Maximum connections per replica. Default: 10.",
    "DICOM_HOST": "Address the HTTP server binds to. Default: 127.0.0.1 (0.0.0.0 in the container image).",
    "DICOM_PORT": "HTTP port. Default: 8080.",
    "DICOM_LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR. Default: INFO.",
    "DICOM_COMPATIBILITY": "Behaviour profile: standard (DICOM PS3.18) or azure (Azure DICOM service v2). "
    "Default: standard.",
    "DICOM_HEALTH_PROBE_INTERVAL_SECONDS": "Seconds between lake health probes. Default: 30.",
    "DICOM_QIDO_MAX_LIMIT": "Largest QIDO-RS limit (standard profile; larger values are lowered to it), "
    "1000-100000. Default: 1000.",
    "DICOM_OPERATIONS_WORKER": "Run long-running operations (extended query tag reindex) in this replica "
    "(true/false). Default: true.",
    "AZURE_CLIENT_ID": "Client id of the user-assigned managed identity (read by DefaultAzureCredential).",
    "DICOM_AUTH_ENABLED": "Require a Microsoft Entra ID bearer token on every DICOMweb route (true/false). "
    "Default: false.",
    "DICOM_AUTH_TENANT_ID": "Entra tenant (directory) id whose tokens are accepted; required with authentication.",
    "DICOM_AUTH_AUDIENCE": "Accepted token audiences (the app registration's Application ID URI and/or client id), "
    "comma-separated; required with authentication.",
    "DICOM_AUTH_ISSUER": "Accepted issuers, comma-separated. Default: the tenant's v2.0 and v1.0 issuers.",
    "DICOM_AUTH_JWKS_URL": "Where the signing keys are fetched. Default: the tenant's Entra discovery keys URL.",
    "DICOM_AUTH_LEEWAY_SECONDS": "Clock skew allowed on exp/nbf, 0-60. Default: 30.",
    "DICOM_AUTH_JWKS_REFRESH_SECONDS": "Least seconds between key refreshes caused by an unknown key id. Default: 300.",
    "DICOM_AUTH_ROLE_MAP": "Extra app roles: Role=action[,action];... with actions read, write, delete, admin.",
    "DICOM_AUDIT_LOG": "Where audit records go: stderr, stdout or an absolute file path. Default: stderr.",
    "DICOM_CORS_ORIGINS": "Browser origins allowed by CORS, comma-separated, or *. Default: none (CORS off).",
    "DICOM_CORS_MAX_AGE_SECONDS": "How long browsers may cache a CORS preflight answer. Default: 600.",
    "DICOM_LIMIT_BODY_BYTES": "Largest request body in bytes (413). Default: 34359738368 (32 GiB).",
    "DICOM_LIMIT_PART_BYTES": "Largest single instance (body part) in bytes (413). Default: 8589934592 (8 GiB).",
    "DICOM_LIMIT_PARTS": "Most body parts in one STOW request (413). Default: 10000.",
    "DICOM_LIMIT_HEADER_BYTES": "Largest total size of the request headers in bytes (431). Default: 32768.",
    "DICOM_LIMIT_QUERY_BYTES": "Longest query string in bytes (414). Default: 8192.",
    "DICOM_LIMIT_BODY_GRACE_SECONDS": "Seconds a request body may take before the minimum rate applies (408). "
    "Default: 30.",
    "DICOM_LIMIT_BODY_MIN_BYTES_PER_SECOND": "Least average upload rate after the grace period; slower bodies are "
    "cut off with 408. Default: 10240.",
}


class CompatibilityProfile(enum.StrEnum):
    STANDARD = "standard"
    AZURE = "azure"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    container: str
    account_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    create_container: bool = False
    managed_identity_client_id: str | None = None

    @property
    def uses_credential(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int = 5432
    name: str = "dicomlake"
    user: str | None = None
    sslmode: str = "require"
    pool_max: int = 10

    @property
    def uses_entra_token(self) -> bool:
        return self.url is None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    enabled: bool = False
    tenant_id: str | None = None
    audiences: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    jwks_url: str | None = None
    leeway_seconds: int = 30
    jwks_refresh_seconds: int = 300
    role_map: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class LimitSettings:
    body_bytes: int = 32 * 1024**3
    part_bytes: int = 8 * 1024**3
    parts: int = 10_000
    header_bytes: int = 32 * 1024
    query_bytes: int = 8 * 1024
    body_grace_seconds: float = 30.0
    body_min_bytes_per_second: int = 10 * 1024


@dataclass(frozen=True, slots=True)
class CorsSettings:
    origins: tuple[str, ...] = ()
    max_age_seconds: int = 600


@dataclass(frozen=True, slots=True)
class Settings:
    storage: StorageSettings
    database: DatabaseSettings
    workspace: str = "workspace"
    service_name: str = "dicom"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    compatibility: CompatibilityProfile = CompatibilityProfile.STANDARD
    health_probe_interval: float = 30.0
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    audit_log: str = "stderr"
    qido_max_limit: int = 1000
    operations_worker: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``environ``; raise :class:`ConfigurationError` listing every problem."""
        reader = _Reader(environ)
        settings = cls(
            storage=_storage(reader),
            database=_database(reader),
            workspace=reader.path_segment("DICOM_WORKSPACE", "workspace"),
            service_name=reader.path_segment("DICOM_SERVICE_NAME", "dicom"),
            host=reader.text("DICOM_HOST", "127.0.0.1"),
            port=reader.integer("DICOM_PORT", 8080, minimum=1, maximum=65535),
            log_level=reader.choice("DICOM_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
            compatibility=CompatibilityProfile(
                reader.choice("DICOM_COMPATIBILITY", "standard", tuple(p.value for p in CompatibilityProfile))
            ),
            health_probe_interval=float(
                reader.integer("DICOM_HEALTH_PROBE_INTERVAL_SECONDS", 30, minimum=1, maximum=3600)
            ),
            auth=_auth(reader),
            limits=_limits(reader),
            cors=_cors(reader),
            audit_log=_audit_log(reader),
            qido_max_limit=reader.integer("DICOM_QIDO_MAX_LIMIT", 1000, minimum=1000, maximum=100_000),
            operations_worker=reader.boolean("DICOM_OPERATIONS_WORKER", True),
        )
        reader.raise_if_problems()
        return settings


_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Reader:
    """Reads typed values and collects every problem, so one start-up reports them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {value!r}.")
            return default
        if not minimum <= number <= maximum:
            self.problems.append(f"{name} must be between {minimum} and {maximum}, got {number}.")
            return default
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.problems.append(f"{name} must be true or false, got {value!r}.")
        return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
        value = self.raw(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
            return default
        return value

    def path_segment(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _SEGMENT_RE.match(value):
            self.problems.append(
                f"{name} must be 1-63 letters, digits, '.', '_' or '-' (it becomes a folder name "
                f"in the data lake); got {value!r}."
            )
            return default
        return value

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigurationError(
                "The service configuration is not valid:\n  - "
                + "\n  - ".join(self.problems)
                + "\nSee docs/configuration.md for every setting."
            )


def _storage(reader: _Reader) -> StorageSettings:
    account_url = reader.raw("DICOM_STORAGE_ACCOUNT_URL")
    connection_string = reader.raw("DICOM_STORAGE_CONNECTION_STRING")
    container = reader.text("DICOM_STORAGE_CONTAINER", "dicom")
    if not _CONTAINER_RE.match(container):
        reader.problems.append(
            "DICOM_STORAGE_CONTAINER must be a valid container name: 3-63 lowercase letters, digits and "
            f"single hyphens, starting and ending with a letter or digit; got {container!r}."
        )
    if account_url is None and connection_string is None:
        reader.problems.append(
            "No storage configured: set DICOM_STORAGE_ACCOUNT_URL (Azure, managed identity) or "
            "DICOM_STORAGE_CONNECTION_STRING (Azurite). `make run` sets up Azurite for you."
        )
    if account_url is not None:
        parts = urlsplit(account_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            reader.problems.append(
                f"DICOM_STORAGE_ACCOUNT_URL must be an https URL such as "
                f"https://<account>.blob.core.windows.net; got {account_url!r}."
            )
        elif ".dfs." in parts.netloc:
            reader.problems.append(
                "DICOM_STORAGE_ACCOUNT_URL must be the Blob endpoint (…blob.core.windows.net), "
                "not the Data Lake (dfs) endpoint; both reach the same data."
            )
    if connection_string is not None and "=" not in connection_string:
        reader.problems.append("DICOM_STORAGE_CONNECTION_STRING does not look like a connection string (Key=Value;…).")
    return StorageSettings(
        container=container,
        account_url=account_url if connection_string is None else None,
        connection_string=connection_string,
        create_container=reader.boolean("DICOM_STORAGE_CREATE_CONTAINER", connection_string is not None),
        managed_identity_client_id=reader.raw("AZURE_CLIENT_ID"),
    )


def _database(reader: _Reader) -> DatabaseSettings:
    url = reader.raw("DICOM_DATABASE_URL")
    host = reader.raw("DICOM_DATABASE_HOST")
    user = reader.raw("DICOM_DATABASE_USER")
    pool_max = reader.integer("DICOM_DATABASE_POOL_MAX", 10, minimum=2, maximum=200)
    if url is not None:
        if not url.startswith(("postgresql://", "postgres://")):
            reader.problems.append("DICOM_DATABASE_URL must start with postgresql://.")
        return DatabaseSettings(url=url, pool_max=pool_max)
    if host is None or user is None:
        reader.problems.append(
            "No database configured: set DICOM_DATABASE_URL, or DICOM_DATABASE_HOST and DICOM_DATABASE_USER "
            "for Microsoft Entra token authentication. `make run` starts an embedded PostgreSQL for you."
        )
    return DatabaseSettings(
        url=None,
        host=host,
        port=reader.integer("DICOM_DATABASE_PORT", 5432, minimum=1, maximum=65535),
        name=reader.text("DICOM_DATABASE_NAME", "dicomlake"),
        user=user,
        sslmode=reader.choice("DICOM_DATABASE_SSLMODE", "require", ("require", "verify-full", "verify-ca", "disable")),
        pool_max=pool_max,
    )


_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ENTRA = "https://login.microsoftonline.com"


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _auth(reader: _Reader) -> AuthSettings:
    from dicomlake.auth.roles import parse_role_map

    enabled = reader.boolean("DICOM_AUTH_ENABLED", False)
    tenant = reader.raw("DICOM_AUTH_TENANT_ID")
    audiences = _list(reader.raw("DICOM_AUTH_AUDIENCE"))
    issuers = _list(reader.raw("DICOM_AUTH_ISSUER"))
    jwks_url = reader.raw("DICOM_AUTH_JWKS_URL")
    leeway = reader.integer("DICOM_AUTH_LEEWAY_SECONDS", 30, minimum=0, maximum=60)
    refresh = reader.integer("DICOM_AUTH_JWKS_REFRESH_SECONDS", 300, minimum=1, maximum=86400)
    try:
        role_map = parse_role_map(reader.raw("DICOM_AUTH_ROLE_MAP") or "")
    except ValueError as e:
        reader.problems.append(f"DICOM_AUTH_ROLE_MAP is not valid: {e}.")
        role_map = {}
    if tenant is not None and not _GUID_RE.match(tenant):
        reader.problems.append(f"DICOM_AUTH_TENANT_ID must be the tenant's id (a GUID); got {tenant!r}.")
        tenant = None
    if enabled:
        if tenant is None:
            reader.problems.append("DICOM_AUTH_ENABLED is true: set DICOM_AUTH_TENANT_ID to your Entra tenant id.")
        if not audiences:
            reader.problems.append(
                "DICOM_AUTH_ENABLED is true: set DICOM_AUTH_AUDIENCE to the app registration's Application ID URI "
                "(e.g. api://dicomlake) and/or its client id."
            )
    if tenant is not None:
        issuers = issuers or (f"{_ENTRA}/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/")
        jwks_url = jwks_url or f"{_ENTRA}/{tenant}/discovery/v2.0/keys"
    if jwks_url is not None:
        parts = urlsplit(jwks_url)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            reader.problems.append(f"DICOM_AUTH_JWKS_URL must be an https URL; got {jwks_url!r}.")
    return AuthSettings(
        enabled=enabled,
        tenant_id=tenant,
        audiences=audiences,
        issuers=issuers,
        jwks_url=jwks_url,
        leeway_seconds=leeway,
        jwks_refresh_seconds=refresh,
        role_map=tuple(role_map.items()),
    )


def _limits(reader: _Reader) -> LimitSettings:
    d = LimitSettings()
    return LimitSettings(
        body_bytes=reader.integer("DICOM_LIMIT_BODY_BYTES", d.body_bytes, minimum=1024, maximum=1024**5),
        part_bytes=reader.integer("DICOM_LIMIT_PART_BYTES", d.part_bytes, minimum=1024, maximum=1024**5),
        parts=reader.integer("DICOM_LIMIT_PARTS", d.parts, minimum=1, maximum=10_000_000),
        header_bytes=reader.integer("DICOM_LIMIT_HEADER_BYTES", d.header_bytes, minimum=1024, maximum=1024**2),
        query_bytes=reader.integer("DICOM_LIMIT_QUERY_BYTES", d.query_bytes, minimum=256, maximum=1024**2),
        body_grace_seconds=float(
            reader.integer("DICOM_LIMIT_BODY_GRACE_SECONDS", int(d.body_grace_seconds), minimum=1, maximum=86400)
        ),
        body_min_bytes_per_second=reader.integer(
            "DICOM_LIMIT_BODY_MIN_BYTES_PER_SECOND", d.body_min_bytes_per_second, minimum=1, maximum=1024**3
        ),
    )


def _cors(reader: _Reader) -> CorsSettings:
    origins = _list(reader.raw("DICOM_CORS_ORIGINS"))
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path):
            reader.problems.append(
                f"DICOM_CORS_ORIGINS entries must be origins such as https://viewer.example.org (or *); got {origin!r}."
            )
    return CorsSettings(
        origins=origins, max_age_seconds=reader.integer("DICOM_CORS_MAX_AGE_SECONDS", 600, minimum=0, maximum=86400)
    )


def _audit_log(reader: _Reader) -> str:
    value = reader.text("DICOM_AUDIT_LOG", "stderr")
    if value not in ("stderr", "stdout") and not value.startswith("/"):
        reader.problems.append(f"DICOM_AUDIT_LOG must be stderr, stdout or an absolute file path; got {value!r}.")
        return "stderr"
    return value


def configure_logging_level(settings: Settings) -> None:
    logging.getLogger("dicomlake").setLevel(settings.log_level)
