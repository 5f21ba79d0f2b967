"""A small token server on loopback, as distribution's token spec describes one
(docs/spec/auth/token.md): `GET <realm>?service=<service>&scope=<scope>...` with a user's
Basic credentials answers `{"token": ..., "access_token": ..., "expires_in": ...}`, a JWT
signed with the test's own key granting the intersection of what was asked and what the
user may do. Its certificate (the key's, signed by a CA of the test's) is what the
registry's `http.auth.bearer.cert` names.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tests.certs import CA

SERVICE = "ocistore-tests"
LIFETIME = 300


class TokenIssuer:
    """`users`: name -> (password, {repository glob: actions}); "registry:catalog" as a glob
    grants the catalog scope. `requests` records (user, scopes asked) for each token handed out."""

    def __init__(self, workdir: Path, users: dict[str, tuple[str, dict[str, list[str]]]]) -> None:
        self.users = users
        self.signer = CA("token signer").issue("token-issuer", client=True)
        self.cert_path, _ = self.signer.write(workdir, "token-signer")
        self.requests: list[tuple[str | None, list[str]]] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TokenIssuer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def token(self, subject: str, access: list[dict[str, Any]], *, lifetime: int = LIFETIME,
              audience: str | None = SERVICE, key: Any = None, algorithm: str = "ES256",
              **claims: Any) -> str:
        """A token as this server signs them (or with another `key`), for tests to send directly."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": "test-token-issuer", "sub": subject, "iat": now, "nbf": now,
                                "exp": now + lifetime, "jti": f"{subject}-{time.monotonic_ns()}", "access": access,
                                **claims}
        if audience is not None:
            body["aud"] = audience
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key if key is not None else self.signer.key, algorithm=algorithm)

    def _user(self, handler: BaseHTTPRequestHandler) -> tuple[bool, str | None]:
        header = handler.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return True, None  # anonymous: a token with no access
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        known = self.users.get(user)
        return known is not None and known[0] == password, user

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        ok, user = self._user(handler)
        if url.path != "/token" or query.get("service") != [SERVICE] or not ok:
            handler.send_response(401 if not ok else 400)
            handler.end_headers()
            return
        asked = [s for value in query.get("scope", []) for s in value.split()]
        self.requests.append((user, asked))
        rights = self.users[user][1] if user is not None else {}
        access = []
        for scope in asked:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = sorted({a for pattern, allowed in rights.items()
                              if fnmatch.fnmatchcase(f"{kind}:{name}" if kind == "registry" else name, pattern)
                              for a in actions.split(",") if a in allowed})
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        token = self.token(user or "", access)
        body = json.dumps({"token": token, "access_token": token, "expires_in": LIFETIME,
                           "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
