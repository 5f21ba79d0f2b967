"""The S3 requests every part of the driver makes: one client per event loop, every call through
`_call`, which turns a missing key into `PathNotFound` and any other S3 or transport failure
into `RegistryError(UNAVAILABLE)` plus one warning line, so no botocore exception reaches the
registry logic; timeouts and bounded retries mean a request fails rather than hangs.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from ...config.drivers import MIB, S3DriverConfig
from ...errors import ErrorCode, RegistryError
from ..driver import PathNotFound

# One logger for the whole driver, whichever of its modules logs.
log = logging.getLogger("ocistore.storage.s3")

READ_PIECE = MIB
LIST_PAGE = 1000  # ListObjectsV2's largest page
DELETE_BATCH = 1000  # DeleteObjects' limit
# An object grown by appends is its base object (marked with this metadata) followed by
# segment objects `<key>.seg/<offset>`, one per append: no append ever copies what came
# before, so a chunked upload costs O(bytes), and `move` concatenates once at the end.
SEGMENTED = "ocistore-segmented"
# HeadObject answers a bare 404 (no body, so no code); moto does so for UploadPartCopy too.
NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError)


class Handled(Exception):
    """An S3 error code the caller asked to handle itself (not a failure worth a warning)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class _Opened:
    stack: AsyncExitStack
    client: Any


class S3Calls:
    """One aioboto3 session per driver, one client per event loop, opened on first use.

    A client (its connection pool) belongs to the loop it was opened in, and a process may
    run several loops (the API's, a worker thread's, a CLI's `asyncio.run`), hence one per
    loop.  `close()` closes the running loop's client; a client whose loop closed first is
    dropped when the next one opens.
    """

    def __init__(self, params: S3DriverConfig) -> None:
        self.params = params
        self.bucket = params.bucket
        self._root = f"{params.rootdirectory}/" if params.rootdirectory else ""
        self._unconditional = False  # the store refused, or ignores, conditional writes
        self._fencing_probed = False
        self._class_args: dict[str, Any] = (
            {} if params.storageclass == "NONE" else {"StorageClass": params.storageclass})
        credentials = {
            "aws_access_key_id": params.accesskey,
            "aws_secret_access_key": params.secretkey,
            "aws_session_token": params.sessiontoken,
            "region_name": params.region,
        }
        # What is absent is left to the standard chain (env, ~/.aws, AWS_PROFILE, instance role).
        self._session = aioboto3.Session(**{k: v for k, v in credentials.items() if v})
        self._clients: dict[asyncio.AbstractEventLoop, asyncio.Task[_Opened]] = {}

    def _client_args(self) -> dict[str, Any]:
        p = self.params
        config = AioConfig(
            connect_timeout=10, read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=64,
            s3={"addressing_style": "path"} if p.path_style else None,
            # botocore >= 1.36 adds CRC checksums to every upload by default, which
            # several S3-compatible stores reject; send them only where S3 requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        args: dict[str, Any] = {
            "config": config,
            "region_name": p.region or self._session.region_name or "us-east-1",
        }
        if p.regionendpoint:
            args["endpoint_url"] = p.regionendpoint
        else:
            args["use_ssl"] = p.secure
        if p.skipverify:
            args["verify"] = False
        return args

    async def _open(self) -> _Opened:
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(self._session.client("s3", **self._client_args()))
            # HeadObject cannot tell a missing bucket from a missing key (both a bare 404):
            # check the bucket once, with the ListBucket permission the driver needs anyway.
            await self._request(client, "ListObjectsV2", None, frozenset(), {"Prefix": self._root, "MaxKeys": 1})
        except BaseException:
            await stack.aclose()
            raise
        return _Opened(stack, client)

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        opening = self._clients.get(loop)
        if opening is None or (opening.done() and (opening.cancelled() or opening.exception() is not None)):
            for other in list(self._clients):  # a snapshot: another thread's loop may add its own
                if other.is_closed():
                    self._clients.pop(other, None)
            opening = self._clients[loop] = loop.create_task(self._open())
        # Shielded: a cancelled request must not cancel the opening others wait for.
        return (await asyncio.shield(opening)).client

    async def close(self) -> None:
        """Close this event loop's client (a no-op when none is open)."""
        opening = self._clients.pop(asyncio.get_running_loop(), None)
        if opening is None:
            return
        try:
            opened = await opening
        except Exception:
            return  # a failed opening closed what it had opened
        await opened.stack.aclose()

    async def _call(self, op: str, missing: str | None = None, handled: frozenset[str] = frozenset(), /,
                    **kwargs: Any) -> dict[str, Any]:
        """Run an S3 operation on the bucket.

        A not-found answer is PathNotFound(`missing`) when `missing` is given; a code in
        `handled` is raised as `Handled` for the caller to deal with.
        """
        return await self._request(await self._client(), op, missing, handled, kwargs)

    async def _request(self, client: Any, op: str, missing: str | None, handled: frozenset[str],
                       kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await getattr(client, xform_name(op))(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            if missing is not None and code in NOT_FOUND:
                raise PathNotFound(missing) from None
            if code in handled:
                raise Handled(code) from None
            raise self._unavailable(op, code, exc) from exc
        except TRANSPORT_ERRORS as exc:
            raise self._unavailable(op, type(exc).__name__, exc) from exc
        return answer

    def _unavailable(self, op: str, code: str, exc: BaseException) -> RegistryError:
        log.warning("s3 %s on bucket %s failed: %s: %s", op, self.bucket, code, exc)
        return RegistryError(ErrorCode.UNAVAILABLE, {"operation": op, "bucket": self.bucket, "code": code})

    # -- keys ---------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """The object key of a path; refuses anything that could step outside the root."""
        if "\0" in path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"unsafe storage path {path!r}")
        return f"{self._root}{path}"

    def _dir_prefix(self, path: str) -> str:
        return f"{self._key(path)}/" if path else self._root

    async def _pages(self, prefix: str, delimiter: str | None = None) -> AsyncIterator[dict[str, Any]]:
        args: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_PAGE}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            page = await self._call("ListObjectsV2", **args)
            yield page
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    async def _delete_keys(self, keys: builtins.list[str]) -> None:
        """DeleteObjects, then one DeleteObject per key it refused.

        A refused key is retried alone: some stores judge a batch by the bucket rather
        than by each key's policy (moto's IAM does), and a key truly refused then gives
        a clear error of its own.
        """
        answer = await self._call("DeleteObjects", Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        for error in answer.get("Errors", []):
            await self._call("DeleteObject", Key=error["Key"])


def segmented(head: dict[str, Any]) -> bool:
    return bool(head.get("Metadata", {}).get(SEGMENTED) == "1")


async def read_piece(body: Any) -> bytes:
    """About 1 MiB from a response body (b"" at its end): the socket hands out far less per read."""
    pieces: builtins.list[bytes] = []
    got = 0
    while got < READ_PIECE:
        chunk: bytes = await body.read(READ_PIECE - got)
        if not chunk:
            break
        pieces.append(chunk)
        got += len(chunk)
    return b"".join(pieces)
