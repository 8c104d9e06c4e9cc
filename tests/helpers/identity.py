"""A local stand-in for the Azure Container Apps managed identity endpoint (IDENTITY_ENDPOINT).

It hands out bearer tokens in the shape Azurite's ``--oauth basic`` mode accepts: issuer
``https://sts.windows.net/{tenant}/``, audience the requested resource, a short lifetime. Azurite checks
issuer, audience and lifetime, not the signature.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_token(resource: str, lifetime: int, object_id: str) -> tuple[str, int]:
    now = int(time.time())
    exp = now + lifetime
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 5,
        "nbf": now - 5,
        "exp": exp,
        "oid": object_id,
        "tid": TENANT,
        "appid": object_id,
    }
    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{_b64(header)}.{_b64(claims)}.{signature}", exp


class IdentityEndpoint:
    def __init__(self, *, lifetime: int = 3600, client_id: str = "11111111-2222-3333-4444-555555555555") -> None:
        self.lifetime = lifetime
        self.client_id = client_id
        self.secret = secrets.token_hex(16)
        self.requests: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                endpoint.requests.append(
                    query | {"header": self.headers.get("X-IDENTITY-HEADER", ""), "at": repr(time.time())}
                )
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.secret:
                    self.send_response(401)
                    self.end_headers()
                    return
                resource = query.get("resource", "")
                token, exp = make_token(resource, endpoint.lifetime, query.get("client_id", "unknown"))
                body = json.dumps(
                    {
                        "access_token": token,
                        "expires_on": str(exp),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": query.get("client_id", ""),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"

    def environ(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret, "AZURE_CLIENT_ID": self.client_id}

    def __enter__(self) -> IdentityEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
