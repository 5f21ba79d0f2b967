"""The S3 driver: the same byte-level interface as the local one, over an S3 bucket.

Keys are the driver's paths below `rootdirectory`; "directories" are key prefixes, so a
directory exists exactly while some key lies below it.  Writes are PutObject (atomic) or,
past `chunksize`, a multipart upload whose parts go out as they fill, so memory stays at
about one part per writer whatever the blob size.  An append (an upload session grown by
PATCH requests that may land on different replicas) keeps no state between writers: it
rebuilds the object as old bytes + new bytes, the old bytes copied server-side when they
can be a part of their own (>= 5 MiB), otherwise downloaded, which is cheap at that size.

Every call goes through `_call`, which turns a missing key into `PathNotFound` and any
other S3 or transport failure into `RegistryError(UNAVAILABLE)` plus one warning line, so
no botocore exception reaches the registry logic; timeouts and bounded retries mean a
request fails rather than hangs.  Only the actions of zot's documented minimal policy are
used (CopyObject and UploadPartCopy are authorised by GetObject + PutObject, DeleteObjects
by DeleteObject; the bucket check at start-up is a one-key ListObjectsV2).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from ..config.drivers import MAX_COPY, MIB, MIN_PART, S3DriverConfig
from ..errors import ErrorCode, RegistryError
from .driver import FileInfo, FileWriter, PathNotFound, StorageDriver, VersionChanged

log = logging.getLogger(__name__)

READ_PIECE = MIB
LIST_PAGE = 1000  # ListObjectsV2's largest page
DELETE_BATCH = 1000  # DeleteObjects' limit
# An object grown by appends is its base object (marked with this metadata) followed by
# segment objects `<key>.seg/<offset>`, one per append: no append ever copies what came
# before, so a chunked upload costs O(bytes), and `move` concatenates once at the end.
SEGMENTED = "ocistore-segmented"
_SEGMENT = re.compile(r"\.seg/[0-9]{20}\Z")
# HeadObject answers a bare 404 (no body, so no code); moto does so for UploadPartCopy too.
NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError)


# A conditional GET whose version the caller already holds.
_NOT_MODIFIED = frozenset({"304", "NotModified"})
# A conditional write that lost (412), or raced another one to the same key (409).
_FENCE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NO_CONDITIONS = frozenset({"NotImplemented"})
FENCE_PROBE = ".ocistore/fence-probe"


class _Handled(Exception):
    """An S3 error code the caller asked to handle itself (not a failure worth a warning)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class _Opened:
    stack: AsyncExitStack
    client: Any


class S3Writer(FileWriter):
    """Buffers up to one part; the object appears (or is replaced) only on `close`."""

    def __init__(self, driver: S3Driver, path: str, key: str) -> None:
        self._driver = driver
        self._path = path
        self._key = key
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False
        self.size = 0

    async def _start_upload(self) -> str:
        if self._upload_id is None:
            answer = await self._driver._call("CreateMultipartUpload", Key=self._key, **self._driver._class_args)
            self._upload_id = str(answer["UploadId"])
        return self._upload_id

    async def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)
        chunk = self._driver.params.chunksize
        while len(self._buf) >= chunk:
            await self._upload_part(bytes(memoryview(self._buf)[:chunk]))
            del self._buf[:chunk]

    async def _upload_part(self, body: bytes) -> None:
        upload_id = await self._start_upload()
        number = len(self._parts) + 1
        answer = await self._driver._call(
            "UploadPart", Key=self._key, UploadId=upload_id, PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            if self._upload_id is None:
                await self._driver._call("PutObject", Key=self._key, Body=bytes(self._buf),
                                         **self._driver._class_args)
            else:
                if self._buf or not self._parts:
                    await self._upload_part(bytes(self._buf))
                await self._driver._call("CompleteMultipartUpload", Key=self._key, UploadId=self._upload_id,
                                         MultipartUpload={"Parts": self._parts})
        except Exception:
            await self._abort()
            raise
        finally:
            self._buf = bytearray()
        self._upload_id = None

    async def cancel(self) -> None:
        """Drop the file altogether, as the local driver does, including bytes an append started from."""
        self._done = True
        self._buf = bytearray()
        await self._abort()
        await self._driver._call("DeleteObject", Key=self._key)

    async def discard(self) -> None:
        """Nothing is visible before `close`: an append's segment or a new object just never appears."""
        self._done = True
        self._buf = bytearray()
        await self._abort()

    async def _abort(self) -> None:
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await self._driver._call("AbortMultipartUpload", self._path, Key=self._key, UploadId=upload_id)
        except (PathNotFound, RegistryError):
            pass  # gone already, or logged: GC's abort_stale_multipart_uploads removes it later


class S3Driver(StorageDriver):
    """One aioboto3 session per driver, one client per event loop, opened on first use.

    A client (its connection pool) belongs to the loop it was opened in, and a process may
    run several loops (the API's, a worker thread's, a CLI's `asyncio.run`), hence one per
    loop.  `close()` closes the running loop's client; a client whose loop closed first is
    dropped when the next one opens.  `commit` means nothing here: a successful PUT is durable.
    """

    name = "s3"
    dirs_block_files = False

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

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> S3Driver:
        """From a `storageDriver` map as a config file holds it (keys case-insensitive)."""
        return cls(S3DriverConfig.model_validate(dict(params), context={"file": True}))

    # -- client and calls ---------------------------------------------------------------

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
        `handled` is raised as `_Handled` for the caller to deal with.
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
                raise _Handled(code) from None
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

    # -- copies -------------------------------------------------------------------------

    async def _copy_parts(self, key: str, upload_id: str, src_key: str, size: int,
                          first: int = 1) -> list[dict[str, Any]]:
        """Copy `src_key` server-side as the first parts of an upload, each within S3's 5 GiB limit.

        Equal slices: with `size` >= 5 MiB every slice is a valid non-final part.
        """
        count = -(-size // MAX_COPY)
        step = -(-size // count)
        parts: list[dict[str, Any]] = []
        for number, start in enumerate(range(0, size, step), first):
            ranged = {"CopySourceRange": f"bytes={start}-{min(start + step, size) - 1}"} if count > 1 else {}
            answer = await self._call("UploadPartCopy", Key=key, UploadId=upload_id, PartNumber=number,
                                      CopySource={"Bucket": self.bucket, "Key": src_key}, **ranged)
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        return parts

    async def _copy(self, src: str, dst: str) -> None:
        """Server-side copy; past CopyObject's 5 GiB limit a multipart copy."""
        src_key, dst_key = self._key(src), self._key(dst)
        head = await self._call("HeadObject", src, Key=src_key)
        if src_key == dst_key:
            return
        if _segmented(head):
            await self._concat(await self._pieces(src, head), dst)
            return
        size = int(head["ContentLength"])
        if size <= MAX_COPY:
            await self._call("CopyObject", src, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key},
                             **self._class_args)
            return
        await self._multipart_copy(src_key, dst, size)

    async def _multipart_copy(self, src_key: str, dst: str, size: int) -> None:
        """A server-side copy in parts (past CopyObject's 5 GiB), onto another key or the same."""
        dst_key = self._key(dst)
        upload_id = str((await self._call("CreateMultipartUpload", Key=dst_key, **self._class_args))["UploadId"])
        try:
            parts = await self._copy_parts(dst_key, upload_id, src_key, size)
            await self._call("CompleteMultipartUpload", Key=dst_key, UploadId=upload_id,
                             MultipartUpload={"Parts": parts})
        except Exception:
            try:
                await self._call("AbortMultipartUpload", dst, Key=dst_key, UploadId=upload_id)
            except (PathNotFound, RegistryError):
                pass  # logged; GC's abort_stale_multipart_uploads removes it later
            raise

    async def _pieces(self, path: str, head: dict[str, Any] | None = None) -> builtins.list[_Piece]:
        """The object's pieces in order: its base, then (when segmented) its segments."""
        key = self._key(path)
        head = head or await self._call("HeadObject", path, Key=key)
        pieces = [_Piece(key, int(head["ContentLength"]), head["LastModified"].timestamp())]
        if _segmented(head):
            async for page in self._pages(f"{key}.seg/"):
                pieces += [_Piece(o["Key"], int(o["Size"]), o["LastModified"].timestamp())
                           for o in page.get("Contents", [])]
            pieces[1:] = sorted(pieces[1:], key=lambda p: p.key)  # zero-padded offsets: key order
        return pieces

    async def _concat(self, pieces: builtins.list[_Piece], dst: str) -> None:
        """One object from the pieces: server-side copies where a piece can be a part, else streamed."""
        dst_key = self._key(dst)
        total = sum(p.size for p in pieces)
        if total < MIN_PART:
            data = b"".join([await self._read_all(p) for p in pieces if p.size])
            await self._call("PutObject", Key=dst_key, Body=data, **self._class_args)
            return
        upload_id = str((await self._call("CreateMultipartUpload", Key=dst_key, **self._class_args))["UploadId"])
        parts: builtins.list[dict[str, Any]] = []
        buf = bytearray()

        async def flush(body: bytes) -> None:
            answer = await self._call("UploadPart", Key=dst_key, UploadId=upload_id, PartNumber=len(parts) + 1,
                                      Body=body)
            parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})

        try:
            for piece in pieces:
                if not piece.size:
                    continue
                if not buf and piece.size >= MIN_PART:
                    parts += await self._copy_parts(dst_key, upload_id, piece.key, piece.size, len(parts) + 1)
                    continue
                async for chunk in self._read_key(dst, piece.key, 0, piece.size):
                    buf += chunk
                    while len(buf) >= self.params.chunksize:
                        await flush(bytes(buf[:self.params.chunksize]))
                        del buf[:self.params.chunksize]
            if buf:
                await flush(bytes(buf))
            await self._call("CompleteMultipartUpload", Key=dst_key, UploadId=upload_id,
                             MultipartUpload={"Parts": parts})
        except Exception:
            try:
                await self._call("AbortMultipartUpload", dst, Key=dst_key, UploadId=upload_id)
            except (PathNotFound, RegistryError):
                pass
            raise

    async def _read_all(self, piece: _Piece) -> bytes:
        return b"".join([c async for c in self._read_key(piece.key, piece.key, 0, piece.size)])

    async def _delete_segments(self, key: str) -> None:
        async for page in self._pages(f"{key}.seg/"):
            keys = [o["Key"] for o in page.get("Contents", [])]
            for i in range(0, len(keys), DELETE_BATCH):
                await self._delete_keys(keys[i:i + DELETE_BATCH])

    # -- the interface ------------------------------------------------------------------

    async def touch(self, path: str) -> None:
        """A copy onto itself with new metadata: S3's only way to renew LastModified.  Past
        CopyObject's 5 GiB, a multipart copy onto itself."""
        key = self._key(path)
        head = await self._call("HeadObject", path, Key=key)
        if int(head["ContentLength"]) > MAX_COPY and not _segmented(head):
            await self._multipart_copy(key, path, int(head["ContentLength"]))
            return
        await self._call("CopyObject", path, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                         MetadataDirective="REPLACE", **self._class_args)

    async def get_content(self, path: str) -> bytes:
        answer = await self._call("GetObject", path, Key=self._key(path))
        body = answer["Body"]
        if _segmented(answer):
            body.close()
            return b"".join([chunk async for chunk in self.read_stream(path)])
        try:
            data: bytes = await body.read()
        except TRANSPORT_ERRORS as exc:
            raise self._unavailable("GetObject", type(exc).__name__, exc) from exc
        finally:
            body.close()
        return data

    async def read_version(self, path: str, known: FileInfo | None = None,
                           max_bytes: int | None = None) -> tuple[FileInfo, bytes | None]:
        """One GetObject, `If-None-Match` the ETag of the version `known`: a 304 when it still is
        (S3 compares versions for us), else the bytes with their version in the same answer."""
        condition = {} if known is None or _pieced(known) else {"IfNoneMatch": f'"{known.ident}"'}
        try:
            answer = await self._call("GetObject", path, _NOT_MODIFIED, Key=self._key(path), **condition)
        except _Handled:
            assert known is not None
            return known, None
        body = answer["Body"]
        info = FileInfo(path, int(answer["ContentLength"]), answer["LastModified"].timestamp(), False,
                        str(answer["ETag"]).strip('"'))
        if _segmented(answer) or (max_bytes is not None and info.size > max_bytes):
            body.close()
            return await super().read_version(path, known, max_bytes) if _segmented(answer) else (info, None)
        try:
            data: bytes = await body.read()
        except TRANSPORT_ERRORS as exc:
            raise self._unavailable("GetObject", type(exc).__name__, exc) from exc
        finally:
            body.close()
        return info, data

    async def put_content(self, path: str, data: bytes) -> None:
        await self._call("PutObject", Key=self._key(path), Body=data, **self._class_args)

    async def replace_content(self, path: str, data: bytes, expected: FileInfo | None) -> FileInfo:
        """A conditional PutObject: If-Match the ETag read, or If-None-Match `*` to create.

        A store that does not implement conditional writes (older S3-compatible servers), or
        accepts the headers and ignores them (found by a probe before the first fenced write),
        gets a plain PutObject, logged once: writers are then fenced by their leases alone.
        The version written is the answer's ETag (its time is this host's clock: S3 does not
        say, and versions are told apart by ETag alone here).
        """
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": f'"{expected.ident}"'}
        if not self._fencing_probed:
            await self._probe_fencing()
            self._fencing_probed = True
        key = self._key(path)
        answer: dict[str, Any] | None = None
        if not self._unconditional:
            try:
                answer = await self._call("PutObject", None, _FENCE_CODES | _NO_CONDITIONS, Key=key, Body=data,
                                          **condition, **self._class_args)
            except _Handled as refused:
                if refused.code in _FENCE_CODES:
                    raise VersionChanged(path) from None
                self._unconditional = True
                log.warning("s3 bucket %s does not take conditional writes (%s): index.json writes are "
                            "fenced by leases only", self.bucket, refused.code)
        if answer is None:
            answer = await self._call("PutObject", Key=key, Body=data, **self._class_args)
        return FileInfo(path, len(data), time.time(), False, str(answer["ETag"]).strip('"'))

    async def _probe_fencing(self) -> None:
        """Create a probe object twice with If-None-Match `*`: a store that honours conditions
        refuses the second (412); one that answers 200 ignores them."""
        probe = f"{FENCE_PROBE}-{uuid.uuid4().hex}"  # one's own: concurrent probes cannot meet
        key = self._key(probe)
        try:
            for _ in range(2):
                await self._call("PutObject", None, _FENCE_CODES | _NO_CONDITIONS, Key=key, Body=b"",
                                 IfNoneMatch="*", **self._class_args)
        except _Handled as answer:
            if answer.code in _FENCE_CODES:
                return  # refused the second: conditions are honoured
            why = answer.code
        else:
            why = "conditions accepted but ignored"
        finally:
            try:
                await self.delete(probe)
            except PathNotFound:
                pass
        self._unconditional = True
        log.warning("s3 bucket %s does not honour conditional writes (%s): index.json writes are "
                    "fenced by leases only", self.bucket, why)

    async def read_stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self._key(path)
        head = await self._call("HeadObject", path, Key=key) if length == 0 else None
        if head is not None and not _segmented(head):
            return
        try:
            async for piece in self._read_key(path, key, offset, length, check_segmented=True):
                yield piece
            return
        except _SegmentedObject:
            pass
        # Appended to: walk the pieces, each read for the part of the range it holds.
        remaining = length
        start = 0
        for p in await self._pieces(path):
            end = start + p.size
            if p.size and end > offset and (remaining is None or remaining > 0):
                skip = max(offset - start, 0)
                take = p.size - skip if remaining is None else min(p.size - skip, remaining)
                async for chunk in self._read_key(path, p.key, skip, take):
                    yield chunk
                if remaining is not None:
                    remaining -= take
            start = end

    async def _read_key(self, path: str, key: str, offset: int, length: int | None,
                        check_segmented: bool = False) -> AsyncIterator[bytes]:
        if length == 0:
            return
        ranged: dict[str, Any] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            ranged["Range"] = f"bytes={offset}-{end}"
        try:
            answer = await self._call("GetObject", path, frozenset({"InvalidRange"}), Key=key, **ranged)
        except _Handled:
            # Past the end of the object, or of a segmented object's (often empty) base.
            if check_segmented and _segmented(await self._call("HeadObject", path, Key=key)):
                raise _SegmentedObject() from None
            return
        body = answer["Body"]
        try:
            if check_segmented and _segmented(answer):
                raise _SegmentedObject()
            while True:
                try:
                    piece = await _read_piece(body)
                except TRANSPORT_ERRORS as exc:
                    raise self._unavailable("GetObject", type(exc).__name__, exc) from exc
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self._key(path)
        if not append:
            return S3Writer(self, path, key)
        head = await self._call("HeadObject", path, Key=key)
        if not _segmented(head) and not int(head["ContentLength"]):
            return S3Writer(self, path, key)  # nothing to keep: the first append replaces the empty base
        if not _segmented(head):
            # Mark the base once; the copy onto itself also keeps its bytes, if it has any.
            await self._call("CopyObject", path, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                             MetadataDirective="REPLACE", Metadata={SEGMENTED: "1"}, **self._class_args)
        existing = sum(p.size for p in await self._pieces(path, head))
        writer = S3Writer(self, path, f"{key}.seg/{existing:020d}")
        writer.size = existing
        return writer

    async def stat(self, path: str) -> FileInfo:
        if not path:
            return FileInfo("", 0, 0.0, True)
        try:
            return await self.stat_file(path)
        except PathNotFound:
            page = await self._call("ListObjectsV2", Prefix=f"{self._key(path)}/", MaxKeys=1)
            if page.get("KeyCount"):
                return FileInfo(path, 0, 0.0, True)
            raise

    async def stat_file(self, path: str) -> FileInfo:
        """One HeadObject: a missing key is no file, whatever keys lie below it (no listing)."""
        if not path:
            raise PathNotFound(path)
        head = await self._call("HeadObject", path, Key=self._key(path))
        if _segmented(head):
            pieces = await self._pieces(path, head)
            return FileInfo(path, sum(p.size for p in pieces), max(p.mtime for p in pieces), False,
                            "+".join(f"{p.key}:{p.size}" for p in pieces))
        return FileInfo(path, int(head["ContentLength"]), head["LastModified"].timestamp(), False,
                        str(head["ETag"]).strip('"'))

    async def delete_file(self, path: str, info: FileInfo) -> None:
        """One DeleteObject (which answers the same for a missing key) for an object never appended
        to; one appended to has segments to delete with it."""
        if _pieced(info):
            await super().delete_file(path, info)
            return
        await self._call("DeleteObject", Key=self._key(path))

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self._dir_prefix(path)
        names: builtins.list[str] = []
        found = False
        async for page in self._pages(prefix, "/"):
            found = found or bool(page.get("KeyCount"))
            names += [p["Prefix"][len(prefix):] for p in page.get("CommonPrefixes", [])]
            # A key equal to the prefix is a "folder" marker some tools create, not a child.
            names += [o["Key"][len(prefix):] for o in page.get("Contents", []) if o["Key"] != prefix]
        if not found and path:
            raise PathNotFound(path)
        # An appended object's segments are part of it, not a directory of their own.
        files = {n for n in names if not n.endswith("/")}
        return [n for n in names if not (n.endswith(".seg/") and n[:-5] in files)]

    async def move(self, src: str, dst: str) -> None:
        await self._copy(src, dst)
        if self._key(src) != self._key(dst):
            await self.delete(src)

    async def link(self, src: str, dst: str) -> None:
        # A copy on S3; its LastModified is the copy's time, as `link` promises.
        await self._copy(src, dst)

    async def delete(self, path: str) -> None:
        key = self._key(path)
        if path:
            try:
                head = await self._call("HeadObject", path, Key=key)
            except PathNotFound:
                pass
            else:
                if _segmented(head):
                    await self._delete_segments(key)
                await self._call("DeleteObject", Key=key)
                return
        deleted = 0
        # S3's continuation token is a position in key order, so deleting listed keys is safe.
        async for page in self._pages(self._dir_prefix(path)):
            keys = [o["Key"] for o in page.get("Contents", [])]
            for i in range(0, len(keys), DELETE_BATCH):
                await self._delete_keys(keys[i:i + DELETE_BATCH])
            deleted += len(keys)
        if not deleted and path:
            raise PathNotFound(path)

    async def _delete_keys(self, keys: builtins.list[str]) -> None:
        """DeleteObjects, then one DeleteObject per key it refused.

        A refused key is retried alone: some stores judge a batch by the bucket rather
        than by each key's policy (moto's IAM does), and a key truly refused then gives
        a clear error of its own.
        """
        answer = await self._call("DeleteObjects", Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        for error in answer.get("Errors", []):
            await self._call("DeleteObject", Key=error["Key"])

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        files: dict[str, FileInfo] = {}
        segments: builtins.list[tuple[str, int, float]] = []
        async for page in self._pages(self._dir_prefix(path)):
            for o in page.get("Contents", []):
                key: str = o["Key"]
                if key.endswith("/"):
                    continue  # a "folder" marker, not a file
                rel, size, mtime = key[len(self._root):], int(o["Size"]), o["LastModified"].timestamp()
                if _SEGMENT.search(rel):
                    segments.append((rel, size, mtime))
                else:
                    files[rel] = FileInfo(rel, size, mtime, False, str(o["ETag"]).strip('"'))
        # An appended object is one file: its segments count toward it.
        for rel, size, mtime in segments:
            base = files.get(_SEGMENT.sub("", rel))
            if base is None:
                files[rel] = FileInfo(rel, size, mtime, False, rel)
            else:
                files[base.path] = FileInfo(base.path, base.size + size, max(base.mtime, mtime), False,
                                            f"{base.ident}+{rel}")
        for info in files.values():
            yield info

    # -- maintenance --------------------------------------------------------------------

    async def abort_stale_multipart_uploads(self, older_than: float) -> int:
        """Abort this store's multipart uploads started more than `older_than` seconds ago.

        A writer that is neither closed nor cancelled (a crashed replica) leaves its parts
        billed and invisible; GC calls this with its `gcDelay`.  Returns how many were aborted.
        """
        cutoff = time.time() - older_than
        aborted = 0
        args: dict[str, Any] = {"Prefix": self._root}
        while True:
            page = await self._call("ListMultipartUploads", **args)
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() <= cutoff:
                    try:
                        await self._call("AbortMultipartUpload", upload["Key"], Key=upload["Key"],
                                         UploadId=upload["UploadId"])
                    except PathNotFound:
                        continue  # finished or aborted meanwhile
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            args.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])


@dataclass(frozen=True)
class _Piece:
    key: str
    size: int
    mtime: float


class _SegmentedObject(Exception):
    """Raised inside a read that found a segmented object: the caller reads it piece by piece."""


def _pieced(info: FileInfo) -> bool:
    """Whether a stat'ed file is an appended-to object: its identity names its pieces (`key:size`),
    where a plain object's is its ETag, which holds no colon."""
    return ":" in info.ident


def _segmented(head: dict[str, Any]) -> bool:
    return bool(head.get("Metadata", {}).get(SEGMENTED) == "1")


async def _read_piece(body: Any) -> bytes:
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
