"""A stand-in for Microsoft Entra ID, fully offline: an RSA key pair, its JWKS served over HTTP on
127.0.0.1 (a thread), and tokens minted with pyjwt, valid or forged on purpose."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dicomlake.config import AuthSettings, Settings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b7e1f3c-1111-4c5d-9a1b-2c3d4e5f6a7b"
AUDIENCE = "api://dicomlake-test"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


_KEYS: list[rsa.RSAPrivateKey] = []
_next = 0


def _pool(index: int) -> rsa.RSAPrivateKey:
    """RSA keys are slow to generate: a few per session, reused."""
    while len(_KEYS) <= index:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[index]


def new_key() -> rsa.RSAPrivateKey:
    """A key other than the stand-in's own signing key."""
    global _next
    _next = _next % 3 + 1
    return _pool(_next)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeEntra:
    """Serves ``/keys`` (the JWKS of ``self.keys``) and mints tokens."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {"key-1": _pool(0)}
        self.requests = 0
        self.available = True
        entra = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                entra.requests += 1
                if not entra.available or self.path != "/keys":
                    self.send_response(503 if not entra.available else 404)
                    self.end_headers()
                    return
                body = json.dumps(entra.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/keys"

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "kty": "RSA"})
        return {"keys": keys}

    def start(self) -> FakeEntra:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "tid": TENANT,
            "oid": str(uuid.uuid4()),
            "azp": "11111111-aaaa-bbbb-cccc-222222222222",
            "sub": "subject",
            "idtyp": "app",
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "roles": ["DICOM Data Owner"],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, *, kid: str = "key-1", key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        return jwt.encode(self.claims(**claims), key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def settings(self, base: Settings, **auth: Any) -> Settings:
        values: dict[str, Any] = {
            "enabled": True,
            "tenant_id": TENANT,
            "audiences": (AUDIENCE,),
            "issuers": (ISSUER,),
            "jwks_url": self.jwks_url,
            "leeway_seconds": 30,
            "jwks_refresh_seconds": 300,
        }
        values.update(auth)
        return dataclasses.replace(base, auth=AuthSettings(**values))


@contextmanager
def fake_entra() -> Iterator[FakeEntra]:
    entra = FakeEntra().start()
    try:
        yield entra
    finally:
        entra.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(entra: FakeEntra) -> dict[str, str]:
    """Every class of token that must be refused, by name."""
    now = int(time.time())
    valid = entra.mint()
    head, payload, signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered = b64(json.dumps({**claims, "roles": ["DICOM Data Owner", "Admin"], "oid": "someone-else"}).encode())
    return {
        "expired": entra.mint(exp=now - 120, nbf=now - 3600, iat=now - 3600),
        "not yet valid": entra.mint(nbf=now + 300, iat=now),
        "wrong audience": entra.mint(aud="api://someone-else"),
        "wrong issuer": entra.mint(iss="https://login.microsoftonline.com/evil/v2.0"),
        "wrong tenant": entra.mint(tid=OTHER_TENANT),
        "HS256 with the public key as secret": _hs256(entra),
        "alg none": b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "key-1"}).encode())
        + "."
        + b64(json.dumps(entra.claims()).encode())
        + ".",
        "unknown kid": entra.mint(kid="key-unknown", key=new_key()),
        "known kid, other key": entra.mint(kid="key-1", key=new_key()),
        "tampered payload": f"{head}.{tampered}.{signature}",
        "no exp": entra.mint(exp=None),
        "garbage": "not-a-token",
    }


def _hs256(entra: FakeEntra) -> str:
    """HS256 signed with the public key's PEM as the HMAC secret (the classic key-confusion attack).
    pyjwt refuses to do this itself, so the token is assembled by hand."""
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode())
    payload = b64(json.dumps(entra.claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(public_pem(entra.keys["key-1"]), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"
