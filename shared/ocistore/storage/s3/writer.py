"""Writing one object: PutObject (atomic) or, past `chunksize`, a multipart upload whose parts go
out as they fill, so memory stays at about one part per writer whatever the blob size.
"""

from __future__ import annotations

from typing import Any

from ...errors import RegistryError
from ..driver import FileWriter, PathNotFound
from .calls import S3Calls


class S3Writer(FileWriter):
    """Buffers up to one part; the object appears (or is replaced) only on `close`."""

    def __init__(self, driver: S3Calls, path: str, key: str) -> None:
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

