"""Microsoft Entra ID bearer tokens: JWKS cache, token validation and role mapping (no HTTP framework)."""

from __future__ import annotations

from dicomlake.auth.jwks import JwksCache, KeysUnavailableError
from dicomlake.auth.roles import Action, RoleMap, normalise_role, parse_role_map
from dicomlake.auth.tokens import InvalidTokenError, Principal, TokenValidator

__all__ = [
    "Action",
    "InvalidTokenError",
    "JwksCache",
    "KeysUnavailableError",
    "Principal",
    "RoleMap",
    "TokenValidator",
    "normalise_role",
    "parse_role_map",
]
