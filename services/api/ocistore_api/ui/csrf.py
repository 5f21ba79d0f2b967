"""Tokens for the page's confirmation forms, so a form on another site cannot delete.

A browser sends the Basic credentials it holds with any request to this origin, a form
posted by another site included; what that site cannot have is a token from a page of ours
(the same-origin policy keeps it from reading one). A token is an HMAC over what it allows
(action, repository, reference), who it was issued to (the user and a hash of the exact
`Authorization` header, so it is void once the credentials change), and its expiry.

The key is the store's, not the process's: `.ocistore/ui-csrf-key` in the default store,
made once under its own lock (`ui-csrf-key:store`) by whichever replica first needs it, so
a confirmation page served by one replica can be posted to another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request

from ocistore.auth import ANONYMOUS, Identity
from ocistore.registry import Store
from ocistore.storage import PathNotFound

KEY_PATH = ".ocistore/ui-csrf-key"
TTL = 15 * 60.0


class Tokens:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._key: bytes | None = None

    async def _load(self) -> bytes | None:
        try:
            text = (await self.store.driver.get_content(KEY_PATH)).decode("ascii", "replace").strip()
        except PathNotFound:
            return None
        return bytes.fromhex(text) if len(text) == 64 else None

    async def key(self) -> bytes:
        if self._key is None:
            key = await self._load()
            if key is None:
                async with self.store.locks.hold("ui-csrf-key:store") as lease:
                    key = await self._load()
                    if key is None:
                        key = secrets.token_bytes(32)
                        lease.check()
                        await self.store.driver.put_content(KEY_PATH, key.hex().encode())
            self._key = key
        return self._key

    @staticmethod
    def _holder(request: Request) -> str:
        identity: Identity = getattr(request.state, "identity", ANONYMOUS)
        credentials = "\n".join(request.headers.getlist("authorization")).encode()
        return f"{identity.user or ''}\n{hashlib.sha256(credentials).hexdigest()}"

    async def _mac(self, request: Request, expires: int, *what: str) -> str:
        message = "\n".join([str(expires), self._holder(request), *what]).encode()
        return hmac.new(await self.key(), message, hashlib.sha256).hexdigest()

    async def issue(self, request: Request, *what: str) -> str:
        expires = int(time.time() + TTL)
        return f"{expires}.{await self._mac(request, expires, *what)}"

    async def check(self, request: Request, token: str | None, *what: str) -> bool:
        if not token:
            return False
        stamp, _, mac = token.partition(".")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12 or int(stamp) < time.time():
            return False
        return hmac.compare_digest(mac, await self._mac(request, int(stamp), *what))
