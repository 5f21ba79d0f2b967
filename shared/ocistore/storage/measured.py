"""Any driver, with each call's latency observed by driver and operation.

The registry opens every store's driver through this, so `ocistore_storage_operation_seconds`
covers every call whoever makes it. A stream is timed to its first chunk (the rest is the
client's pace, not the storage's); a missing path is an answer, not an error.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator
from typing import Any

from ..metrics import STORAGE_ERRORS, STORAGE_SECONDS
from .driver import FileInfo, FileWriter, PathNotFound, StorageDriver, VersionChanged

_ANSWERS = (PathNotFound, VersionChanged)


class MeasuredDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.supports_links = inner.supports_links
        self.moves_are_cheap = inner.moves_are_cheap
        self.dirs_block_files = inner.dirs_block_files
        self._seconds: dict[str, Any] = {}

    def __getattr__(self, attr: str) -> Any:
        # A driver's own settings (an S3 driver's bucket, say) read through.
        return getattr(self.inner, attr)

    def _observe(self, operation: str, started: float, failed: BaseException | None = None) -> None:
        child = self._seconds.get(operation)
        if child is None:
            child = self._seconds[operation] = STORAGE_SECONDS.labels(self.name, operation)
        child.observe(time.perf_counter() - started)
        if failed is not None and not isinstance(failed, _ANSWERS):
            STORAGE_ERRORS.labels(self.name, operation).inc()

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await call
        except BaseException as exc:
            self._observe(operation, started, exc)
            raise
        self._observe(operation, started)
        return result

    async def get_content(self, path: str) -> bytes:
        result: bytes = await self._timed("get_content", self.inner.get_content(path))
        return result

    async def put_content(self, path: str, data: bytes) -> None:
        await self._timed("put_content", self.inner.put_content(path, data))

    async def replace_content(self, path: str, data: bytes, expected: FileInfo | None) -> FileInfo | None:
        result: FileInfo | None = await self._timed("replace_content", self.inner.replace_content(path, data, expected))
        return result

    async def stat_file(self, path: str) -> FileInfo:
        result: FileInfo = await self._timed("stat_file", self.inner.stat_file(path))
        return result

    async def read_version(self, path: str, known: FileInfo | None = None,
                           max_bytes: int | None = None) -> tuple[FileInfo, bytes | None]:
        result: tuple[FileInfo, bytes | None] = await self._timed(
            "read_version", self.inner.read_version(path, known, max_bytes))
        return result

    async def create_content(self, path: str, data: bytes) -> bool:
        result: bool = await self._timed("create_content", self.inner.create_content(path, data))
        return result

    async def delete_file(self, path: str, info: FileInfo) -> None:
        await self._timed("delete_file", self.inner.delete_file(path, info))

    async def read_stream(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        first = True
        try:
            async for chunk in self.inner.read_stream(path, offset, length):
                if first:
                    self._observe("read_stream", started)
                    first = False
                yield chunk
        except BaseException as exc:
            if first:
                self._observe("read_stream", started, exc)
            raise
        if first:
            self._observe("read_stream", started)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        result: FileWriter = await self._timed("writer", self.inner.writer(path, append))
        return result

    async def open_local(self, path: str) -> int | None:
        fd: int | None = await self._timed("open", self.inner.open_local(path))
        return fd

    async def stat(self, path: str) -> FileInfo:
        result: FileInfo = await self._timed("stat", self.inner.stat(path))
        return result

    async def list(self, path: str) -> builtins.list[str]:
        result: builtins.list[str] = await self._timed("list", self.inner.list(path))
        return result

    async def move(self, src: str, dst: str) -> None:
        await self._timed("move", self.inner.move(src, dst))

    async def link(self, src: str, dst: str) -> None:
        await self._timed("link", self.inner.link(src, dst))

    async def delete(self, path: str) -> None:
        await self._timed("delete", self.inner.delete(path))

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        started = time.perf_counter()
        try:
            async for info in self.inner.walk(path):
                yield info
        except BaseException as exc:
            self._observe("walk", started, exc)
            raise
        self._observe("walk", started)

    async def dirs_containing(self, markers: frozenset[str], prune: frozenset[str]) -> builtins.list[str]:
        result: builtins.list[str] = await self._timed("dirs_containing", self.inner.dirs_containing(markers, prune))
        return result

    async def touch(self, path: str) -> None:
        await self._timed("touch", self.inner.touch(path))

    async def close(self) -> None:
        await self.inner.close()

    async def remove_empty_dir(self, path: str) -> None:
        await self._timed("remove_empty_dir", self.inner.remove_empty_dir(path))

    async def abort_stale_multipart_uploads(self, older_than: float) -> int:
        result: int = await self._timed("abort_stale_multipart_uploads",
                                        self.inner.abort_stale_multipart_uploads(older_than))
        return result

    async def exists(self, path: str) -> bool:
        result: bool = await self._timed("exists", self.inner.exists(path))
        return result
