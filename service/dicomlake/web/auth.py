"""Security middleware: the audit record of each request, CORS, and Microsoft Entra ID bearer tokens
checked against the action declared for the matched route in ``web/policy.py``.

Order (outermost first, after the request-context middleware): :class:`AuditMiddleware` (matches the
route once, writes the audit record when the request ends), :class:`CorsMiddleware`,
``web.limits.LimitsMiddleware``, :class:`AuthMiddleware`. Everything is configured in the lifespan
(:func:`open_security`); the middleware finds it in ``scope["state"]["security"]``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomlake.audit import AuditEvent, emit, setup_audit
from dicomlake.auth.jwks import JwksCache, KeysUnavailableError
from dicomlake.auth.roles import Action, RoleMap
from dicomlake.auth.tokens import InvalidTokenError, Principal, TokenValidator
from dicomlake.config import DEFAULT_PARTITION, Settings
from dicomlake.dicom.uids import is_valid_uid
from dicomlake.logs import request_id_var
from dicomlake.web.policy import action_for

logger = logging.getLogger(__name__)

ROUTE_KEY = "dicomlake.route"
AUDIT_KEY = "dicomlake.audit"
_CAPTURE_BYTES = 4 * 1024 * 1024
_UNMATCHED = "(unmatched)"


@dataclass(slots=True)
class Security:
    settings: Settings
    validator: TokenValidator | None
    roles: RoleMap
    cors: dict[int, ASGIApp] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def open_security(settings: Settings) -> AsyncIterator[Security]:
    """Audit sink, and with authentication on the key cache (fetched now; the service starts even if
    the authority cannot be reached, and answers 503 until keys arrive)."""
    setup_audit(settings.audit_log)
    roles = RoleMap(dict(settings.auth.role_map))
    if not settings.auth.enabled:
        logger.warning("authentication is off: every caller may read, write and delete")
        yield Security(settings, None, roles)
        return
    assert settings.auth.jwks_url is not None
    keys = JwksCache(settings.auth.jwks_url, min_refresh_seconds=settings.auth.jwks_refresh_seconds)
    try:
        await keys.refresh()
        validator = TokenValidator(
            keys,
            audiences=settings.auth.audiences,
            issuers=settings.auth.issuers,
            tenant_id=settings.auth.tenant_id,
            leeway_seconds=settings.auth.leeway_seconds,
        )
        logger.info("authentication is on", extra={"signingKeysLoaded": keys.loaded})
        yield Security(settings, validator, roles)
    finally:
        await keys.close()


@dataclass(frozen=True, slots=True)
class MatchedRoute:
    template: str
    params: dict[str, Any]
    action: Action | None


def match_route(router: Router, scope: Scope) -> MatchedRoute:
    for route in router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            template = str(getattr(route, "path", "?"))
            return MatchedRoute(template, dict(child.get("path_params", {})), action_for(scope["method"], template))
    return MatchedRoute(_UNMATCHED, {}, None)


def _security(scope: Scope) -> Security | None:
    state = scope.get("state")
    value = state.get("security") if isinstance(state, dict) else None
    return value if isinstance(value, Security) else None


def _is_preflight(scope: Scope) -> bool:
    if scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


_PARTITION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _uid(value: Any) -> str | None:
    """A path UID for the audit record: only a syntactically valid UID is written as given (a client
    could put anything in the path, patient IDs included)."""
    if value is None:
        return None
    return value if isinstance(value, str) and is_valid_uid(value) else "(invalid)"


def _partition(value: Any) -> str:
    if value is None:
        return DEFAULT_PARTITION
    return value if isinstance(value, str) and _PARTITION_RE.match(value) else "(invalid)"


class AuditMiddleware:
    """Matches the route once for the inner middleware, and writes one audit record per request
    (not for the public health routes and CORS preflights)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _security(scope) is None:
            await JSONResponse(
                {"code": "ServiceStarting", "message": "The service is not ready."},
                status_code=503,
                headers={"Retry-After": "5"},
            )(scope, receive, send)
            return
        matched = match_route(self.router, scope)
        scope[ROUTE_KEY] = matched
        if matched.action is Action.PUBLIC or _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        event = AuditEvent(
            request_id=request_id_var.get(),
            method=scope["method"],
            route=matched.template,
            action=matched.action.value if matched.action else None,
            client_ip=client[0] if client else None,
            partition=_partition(matched.params.get("partition")) if matched.template != _UNMATCHED else None,
            study=_uid(matched.params.get("study")),
            series=_uid(matched.params.get("series")),
            instance=_uid(matched.params.get("instance")),
        )
        scope[AUDIT_KEY] = event
        captured = bytearray()
        capture = False

        async def audited_send(message: Message) -> None:
            nonlocal capture
            if message["type"] == "http.response.start":
                event.status = int(message["status"])
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                capture = b"json" in content_type and (event.status >= 400 or matched.action is Action.WRITE)
            elif message["type"] == "http.response.body" and capture:
                captured.extend(message.get("body", b"")[: _CAPTURE_BYTES - len(captured)])
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except BaseException:
            if event.status == 0:
                event.status = 500
            raise
        finally:
            if captured:
                _read_outcome(event, bytes(captured))
            emit(event)


def _read_outcome(event: AuditEvent, body: bytes) -> None:
    """Error code of an error answer; failure reasons and stored studies of a STOW answer."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if not isinstance(document, dict):
        return
    if isinstance(document.get("code"), str):
        event.error_code = document["code"][:64]
    for item in document.get("00081198", {}).get("Value", []) or []:
        reason = item.get("00081197", {}).get("Value", [None])[0] if isinstance(item, dict) else None
        if isinstance(reason, int):
            event.failure_codes.append(reason)
    studies: set[str] = set()
    for item in document.get("00081199", {}).get("Value", []) or []:
        url = item.get("00081190", {}).get("Value", [""])[0] if isinstance(item, dict) else ""
        if isinstance(url, str) and "/studies/" in url:
            study = url.split("/studies/", 1)[1].split("/", 1)[0]
            if is_valid_uid(study):
                studies.add(study)
    event.stored_studies = sorted(studies)


class CorsMiddleware:
    """Starlette's CORS middleware, configured from the settings (off without DICOM_CORS_ORIGINS).
    Preflights are answered before authentication (they carry no token); ``Authorization`` is allowed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        security = _security(scope)
        if scope["type"] != "http" or security is None or not security.settings.cors.origins:
            await self.app(scope, receive, send)
            return
        cors = security.cors.get(id(self))
        if cors is None:
            settings = security.settings.cors
            cors = CORSMiddleware(
                self.app,
                allow_origins=list(settings.origins),
                allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
                allow_headers=[
                    "Authorization",
                    "Accept",
                    "Content-Type",
                    "If-None-Match",
                    "If-Match",
                    "Range",
                    "If-Range",
                    "X-Request-Id",
                ],
                expose_headers=[
                    "X-Request-Id",
                    "ETag",
                    "Location",
                    "Content-Location",
                    "Content-Range",
                    "Accept-Ranges",
                    "Warning",
                    "WWW-Authenticate",
                ],
                max_age=settings.max_age_seconds,
            )
            security.cors[id(self)] = cors
        await cors(scope, receive, send)


def _unauthorized(error: str | None, description: str) -> Response:
    challenge = 'Bearer realm="dicomlake"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    return JSONResponse(
        {"code": "Unauthorized", "message": description}, status_code=401, headers={"WWW-Authenticate": challenge}
    )


_REASONS = {
    "malformed": "The bearer token is malformed.",
    "algorithm": "The token must be signed with RS256.",
    "unknownKey": "The token is signed with a key the authority does not publish.",
    "signature": "The token signature is invalid.",
    "expired": "The token has expired.",
    "notYetValid": "The token is not valid yet.",
    "audience": "The token is not meant for this service (audience).",
    "issuer": "The token comes from an issuer this service does not accept.",
    "tenant": "The token belongs to another tenant.",
    "missingClaim": "The token lacks a required claim (exp, iss or aud).",
    "invalid": "The token is invalid.",
}


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class AuthMiddleware:
    """401 without a valid token, 403 without a role allowing the route's action, 503 without keys.
    A matched route with no declared action is refused for everyone (deny by default)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        security = _security(scope)
        if scope["type"] != "http" or security is None or security.validator is None:
            await self.app(scope, receive, send)
            return
        matched: MatchedRoute = scope.get(ROUTE_KEY) or match_route(self.router, scope)
        event: AuditEvent | None = scope.get(AUDIT_KEY)
        if matched.action is Action.PUBLIC:
            await self.app(scope, receive, send)
            return
        response, principal = await self._authenticate(scope, security.validator, event)
        if response is None and principal is not None:
            response = self._authorize(scope, matched, principal, security.roles)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _authenticate(
        self, scope: Scope, validator: TokenValidator, event: AuditEvent | None
    ) -> tuple[Response | None, Principal | None]:
        token = _bearer(scope)
        if token is None:
            if event is not None:
                event.auth_failure = "missingToken"
            return _unauthorized(None, "A bearer token is required."), None
        try:
            principal = await validator.validate(token)
        except InvalidTokenError as e:
            if event is not None:
                event.auth_failure = e.reason
            return _unauthorized("invalid_token", _REASONS.get(e.reason, _REASONS["invalid"])), None
        except KeysUnavailableError:
            if event is not None:
                event.auth_failure = "signingKeysUnavailable"
            return (
                JSONResponse(
                    {"code": "AuthenticationUnavailable", "message": "Tokens cannot be checked right now."},
                    status_code=503,
                    headers={"Retry-After": "10"},
                ),
                None,
            )
        if event is not None:
            event.caller = principal.audit()
        return None, principal

    def _authorize(self, scope: Scope, matched: MatchedRoute, principal: Principal, roles: RoleMap) -> Response | None:
        if matched.template == _UNMATCHED:
            return None  # the router answers 404/405 to an authenticated caller
        if matched.action is None:
            logger.error(
                "route has no declared action; refused (add it to web/policy.py)",
                extra={"method": scope["method"], "route": matched.template},
            )
            return JSONResponse(
                {"code": "ActionNotDeclared", "message": "This route is not available."}, status_code=403
            )
        if not roles.allows(principal.roles, matched.action):
            return JSONResponse(
                {
                    "code": "Forbidden",
                    "message": f"The caller's roles do not allow the {matched.action.value} action.",
                },
                status_code=403,
            )
        return None
