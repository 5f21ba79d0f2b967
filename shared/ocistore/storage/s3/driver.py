"""The S3 driver's interface: the same byte-level operations as the local driver, over a bucket.

Keys are the driver's paths below `rootdirectory`; "directories" are key prefixes, so a
directory exists exactly while some key lies below it.  Only the actions of zot's documented
minimal policy are used (CopyObject and UploadPartCopy are authorised by GetObject +
PutObject, DeleteObjects by DeleteObject; the bucket check at start-up is a one-key
ListObjectsV2).
"""

from __future__ import annotations

import builtins
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ...config.drivers import S3DriverConfig
from ..driver import FileInfo, FileWriter, PathNotFound, StorageDriver, VersionChanged
from .calls import DELETE_BATCH, SEGMENTED, TRANSPORT_ERRORS, Handled, log, segmented
from .pieces import S3Pieces, SegmentedObject
from .writer import S3Writer

_SEGMENT = re.compile(r"\.seg/[0-9]{20}\Z")
# A conditional GET whose version the caller already holds.
_NOT_MODIFIED = frozenset({"304", "NotModified"})
# A conditional write that lost (412), or raced another one to the same key (409).
_FENCE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NO_CONDITIONS = frozenset({"NotImplemented"})
FENCE_PROBE = ".ocistore/fence-probe"


class S3Driver(S3Pieces, StorageDriver):
    """`commit` means nothing here: a successful PUT is durable."""

    name = "s3"
    dirs_block_files = False

    def __init__(self, params: S3DriverConfig) -> None:
        super().__init__(params)
        self._unconditional = False  # the store refused, or ignores, conditional writes
        self._fencing_probed = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> S3Driver:
        """From a `storageDriver` map as a config file holds it (keys case-insensitive)."""
        return cls(S3DriverConfig.model_validate(dict(params), context={"file": True}))

    # -- the interface ------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        answer = await self._call("GetObject", path, Key=self._key(path))
        body = answer["Body"]
        if segmented(answer):
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
        except Handled:
            assert known is not None
            return known, None
        body = answer["Body"]
        info = FileInfo(path, int(answer["ContentLength"]), answer["LastModified"].timestamp(), False,
                        str(answer["ETag"]).strip('"'))
        if segmented(answer) or (max_bytes is not None and info.size > max_bytes):
            body.close()
            return await super().read_version(path, known, max_bytes) if segmented(answer) else (info, None)
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
            except Handled as refused:
                if refused.code in _FENCE_CODES:
                    raise VersionChanged(path) from None
                self._unconditional = True
                log.warning("s3 bucket %s does not take conditional writes (%s): index.json writes are "
                            "fenced by leases only", self.bucket, refused.code)
        if answer is None:
            answer = await self._call("PutObject", Key=key, Body=data, **self._class_args)
        return FileInfo(path, len(data), time.time(), False, str(answer["ETag"]).strip('"'))

    async def create_content(self, path: str, data: bytes) -> bool:
        """One PutObject `If-None-Match: *` (the fenced write over no version); a store without
        conditional writes overwrites, and counts as written."""
        try:
            await self.replace_content(path, data, None)
        except VersionChanged:
            return False
        return True

    async def _probe_fencing(self) -> None:
        """Create a probe object twice with If-None-Match `*`: a store that honours conditions
        refuses the second (412); one that answers 200 ignores them."""
        probe = f"{FENCE_PROBE}-{uuid.uuid4().hex}"  # one's own: concurrent probes cannot meet
        key = self._key(probe)
        try:
            for _ in range(2):
                await self._call("PutObject", None, _FENCE_CODES | _NO_CONDITIONS, Key=key, Body=b"",
                                 IfNoneMatch="*", **self._class_args)
        except Handled as answer:
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
        if head is not None and not segmented(head):
            return
        try:
            async for piece in self._read_key(path, key, offset, length, check_segmented=True):
                yield piece
            return
        except SegmentedObject:
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

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self._key(path)
        if not append:
            return S3Writer(self, path, key)
        head = await self._call("HeadObject", path, Key=key)
        if not segmented(head) and not int(head["ContentLength"]):
            return S3Writer(self, path, key)  # nothing to keep: the first append replaces the empty base
        if not segmented(head):
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
        if segmented(head):
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
                if segmented(head):
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


def _pieced(info: FileInfo) -> bool:
    """Whether a stat'ed file is an appended-to object: its identity names its pieces (`key:size`),
    where a plain object's is its ETag, which holds no colon."""
    return ":" in info.ident
