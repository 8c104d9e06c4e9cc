"""The authority's signing keys (JWKS), fetched asynchronously and cached.

Keys are fetched at start-up and again when they are older than ``max_age_seconds``. A token signed
with an unknown ``kid`` triggers a refresh at most once every ``min_refresh_seconds`` (key rollover),
so forged ``kid`` values cannot make the service hammer the authority. When no key has ever been
fetched, :class:`KeysUnavailableError` is raised (the request is answered 503, never allowed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

logger = logging.getLogger(__name__)

_MAX_JWKS_BYTES = 1024 * 1024
_RETRY_WITHOUT_KEYS_SECONDS = 2.0


class KeysUnavailableError(Exception):
    """No signing key is available (the authority could not be reached yet)."""


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        min_refresh_seconds: float = 300.0,
        max_age_seconds: float = 24 * 3600.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._keys: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    async def key(self, kid: str) -> Any | None:
        """The public key for ``kid``, or None if the authority does not publish it."""
        now = time.monotonic()
        if not self._keys:
            if self._attempted_at is None or now - self._attempted_at >= _RETRY_WITHOUT_KEYS_SECONDS:
                await self.refresh()
        elif now - self._fetched_at >= self.max_age_seconds:
            await self.refresh()
        if not self._keys:
            raise KeysUnavailableError("no signing keys are available")
        found = self._keys.get(kid)
        if found is None and self._may_refresh_for_unknown_kid():
            await self.refresh()
            found = self._keys.get(kid) if self._keys else None
        return found

    def _may_refresh_for_unknown_kid(self) -> bool:
        return self._attempted_at is None or time.monotonic() - self._attempted_at >= self.min_refresh_seconds

    async def refresh(self) -> None:
        """Fetch the key set once (concurrent callers share one fetch); keep the old keys on failure."""
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:  # someone else fetched while we waited
                return
            self._attempted_at = time.monotonic()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as e:
                logger.warning(
                    "could not fetch the token signing keys",
                    extra={"host": urlsplit(self.url).netloc, "error": type(e).__name__},
                )
                return
            self._keys = keys
            self._fetched_at = time.monotonic()
            logger.info("token signing keys fetched", extra={"keys": len(keys)})

    async def _fetch(self) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(self.url, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            body = await response.content.read(_MAX_JWKS_BYTES + 1)
            if len(body) > _MAX_JWKS_BYTES:
                raise ValueError("key set too large")
        document = jwt.PyJWKSet.from_json(body.decode("utf-8"))
        keys: dict[str, Any] = {}
        for jwk in document.keys:
            if jwk.key_type == "RSA" and jwk.key_id and (jwk.public_key_use in (None, "sig")):
                keys[jwk.key_id] = jwk.key
        if not keys:
            raise ValueError("no RSA signing keys in the key set")
        return keys
