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
    "AZURE_CLIENT_ID": "Client id of the user-assigned managed identity (read by DefaultAzureCredential).",
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


def configure_logging_level(settings: Settings) -> None:
    logging.getLogger("dicomlake").setLevel(settings.log_level)
