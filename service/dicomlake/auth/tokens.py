"""Bearer token validation: RS256 only, signature against the authority's keys, exact issuer and
audience, tenant, ``exp``/``nbf`` with a bounded leeway. Tokens are never logged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from dicomlake.auth.jwks import JwksCache

MAX_TOKEN_CHARS = 16 * 1024
MAX_LEEWAY_SECONDS = 60


class InvalidTokenError(Exception):
    """The token is not acceptable; ``reason`` is a stable code for the audit trail (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: Entra object id, tenant, client application and app roles."""

    oid: str | None
    tid: str | None
    app_id: str | None
    roles: tuple[str, ...]
    identity_type: str | None = None

    def audit(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "tid": self.tid,
            "appid": self.app_id,
            "roles": list(self.roles),
            "idtyp": self.identity_type,
        }


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and len(value) <= 256 else None


class TokenValidator:
    def __init__(
        self,
        keys: JwksCache,
        *,
        audiences: Sequence[str],
        issuers: Sequence[str],
        tenant_id: str | None,
        leeway_seconds: int = 30,
    ) -> None:
        if not audiences or not issuers:
            raise ValueError("a validator needs at least one audience and one issuer")
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be 0-{MAX_LEEWAY_SECONDS} seconds")
        self.keys = keys
        self.audiences = list(audiences)
        self.issuers = list(issuers)
        self.tenant_id = tenant_id
        self.leeway = leeway_seconds

    async def validate(self, token: str) -> Principal:
        """Return the caller, or raise :class:`InvalidTokenError` (or ``KeysUnavailableError``)."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidTokenError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidTokenError("malformed") from e
        if header.get("alg") != "RS256":  # never HS256 (key confusion) or none
            raise InvalidTokenError("algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("unknownKey")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidTokenError("unknownKey")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuers,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as e:
            raise InvalidTokenError("expired") from e
        except jwt.ImmatureSignatureError as e:
            raise InvalidTokenError("notYetValid") from e
        except jwt.InvalidAudienceError as e:
            raise InvalidTokenError("audience") from e
        except jwt.InvalidIssuerError as e:
            raise InvalidTokenError("issuer") from e
        except jwt.InvalidSignatureError as e:
            raise InvalidTokenError("signature") from e
        except jwt.MissingRequiredClaimError as e:
            raise InvalidTokenError("missingClaim") from e
        except jwt.PyJWTError as e:
            raise InvalidTokenError("invalid") from e
        if self.tenant_id is not None and claims.get("tid") != self.tenant_id:
            raise InvalidTokenError("tenant")
        roles = claims.get("roles")
        role_list = tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()
        return Principal(
            oid=_text(claims, "oid"),
            tid=_text(claims, "tid"),
            app_id=_text(claims, "azp") or _text(claims, "appid"),
            roles=role_list,
            identity_type=_text(claims, "idtyp"),
        )
