"""Reading and joining objects: ranged reads, an appended object's pieces, server-side copies.

An append (an upload session grown by PATCH requests that may land on different replicas)
keeps no state between writers: its object is a base plus one segment per append, joined
once by `move`, the pieces copied server-side when they can be a part of their own
(>= 5 MiB), otherwise downloaded, which is cheap at that size.  Past CopyObject's 5 GiB, a
copy goes in parts.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ...config.drivers import MAX_COPY, MIN_PART
from ...errors import RegistryError
from ..driver import PathNotFound
from .calls import DELETE_BATCH, TRANSPORT_ERRORS, Handled, S3Calls, read_piece, segmented


@dataclass(frozen=True)
class Piece:
    key: str
    size: int
    mtime: float


class SegmentedObject(Exception):
    """Raised inside a read that found a segmented object: the caller reads it piece by piece."""


class S3Pieces(S3Calls):
    """Reads by key and range, and copies, over `S3Calls`."""

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
        if segmented(head):
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

    async def _pieces(self, path: str, head: dict[str, Any] | None = None) -> builtins.list[Piece]:
        """The object's pieces in order: its base, then (when segmented) its segments."""
        key = self._key(path)
        head = head or await self._call("HeadObject", path, Key=key)
        pieces = [Piece(key, int(head["ContentLength"]), head["LastModified"].timestamp())]
        if segmented(head):
            async for page in self._pages(f"{key}.seg/"):
                pieces += [Piece(o["Key"], int(o["Size"]), o["LastModified"].timestamp())
                           for o in page.get("Contents", [])]
            pieces[1:] = sorted(pieces[1:], key=lambda p: p.key)  # zero-padded offsets: key order
        return pieces

    async def _concat(self, pieces: builtins.list[Piece], dst: str) -> None:
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

    async def _read_all(self, piece: Piece) -> bytes:
        return b"".join([c async for c in self._read_key(piece.key, piece.key, 0, piece.size)])

    async def _delete_segments(self, key: str) -> None:
        async for page in self._pages(f"{key}.seg/"):
            keys = [o["Key"] for o in page.get("Contents", [])]
            for i in range(0, len(keys), DELETE_BATCH):
                await self._delete_keys(keys[i:i + DELETE_BATCH])

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
        except Handled:
            # Past the end of the object, or of a segmented object's (often empty) base.
            if check_segmented and segmented(await self._call("HeadObject", path, Key=key)):
                raise SegmentedObject() from None
            return
        body = answer["Body"]
        try:
            if check_segmented and segmented(answer):
                raise SegmentedObject()
            while True:
                try:
                    piece = await read_piece(body)
                except TRANSPORT_ERRORS as exc:
                    raise self._unavailable("GetObject", type(exc).__name__, exc) from exc
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    async def touch(self, path: str) -> None:
        """A copy onto itself with new metadata: S3's only way to renew LastModified.  Past
        CopyObject's 5 GiB, a multipart copy onto itself."""
        key = self._key(path)
        head = await self._call("HeadObject", path, Key=key)
        if int(head["ContentLength"]) > MAX_COPY and not segmented(head):
            await self._multipart_copy(key, path, int(head["ContentLength"]))
            return
        await self._call("CopyObject", path, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                         MetadataDirective="REPLACE", **self._class_args)
