"""The local filesystem driver.

Small operations (stat, a manifest or index.json) run inline: a page-cache hit costs
less than a hop to a thread.  Large reads and writes go to a thread in 1 MiB pieces so
the event loop keeps serving.  With `commit`, files and their directories are fsynced
before an operation reports success, as zot does.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import IO, Any

from .driver import FileInfo, FileWriter, PathNotFound, StorageDriver

CHUNK = 1 << 20
INLINE_LIMIT = 256 << 10


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(FileWriter):
    def __init__(self, f: IO[Any], path: str, commit: bool) -> None:
        self._f = f
        self._path = path
        self._commit = commit
        self.size = f.tell()

    async def write(self, data: bytes) -> None:
        if len(data) > INLINE_LIMIT:
            await asyncio.to_thread(self._f.write, data)
        else:
            self._f.write(data)
        self.size += len(data)

    async def close(self) -> None:
        self._f.flush()
        if self._commit:
            await asyncio.to_thread(os.fsync, self._f.fileno())
        self._f.close()

    async def cancel(self) -> None:
        self._f.close()
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass


class LocalDriver(StorageDriver):
    name = "local"

    def __init__(self, root: str, commit: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.commit = commit
        os.makedirs(self.root, exist_ok=True)
        self.supports_links = _probe_links(self.root)

    def full(self, path: str) -> str:
        """The OS path of a key; refuses anything that could step outside the root."""
        if "\0" in path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"unsafe storage path {path!r}")
        return os.path.join(self.root, path) if path else self.root

    async def get_content(self, path: str) -> bytes:
        try:
            with open(self.full(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        if self.commit:
            # fsyncs take milliseconds to seconds on a busy disk: never on the event loop.
            await asyncio.to_thread(self._put_sync, path, data)
        else:
            self._put_sync(path, data)

    def _put_sync(self, path: str, data: bytes) -> None:
        full = self.full(path)
        directory = os.path.dirname(full)
        tmp = f"{full}.tmp-{uuid.uuid4().hex}"
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            f = open(tmp, "wb")
        try:
            with f:
                f.write(data)
                if self.commit:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, full)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self.commit:
            _fsync_dir(directory)

    async def read_stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            f = open(self.full(path), "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        with f:
            if offset:
                f.seek(offset)
            remaining = length if length is not None else os.fstat(f.fileno()).st_size - offset
            if remaining <= INLINE_LIMIT:
                if remaining > 0:
                    yield f.read(remaining)
                return
            # Read ahead: the next piece comes off the disk while this one goes out.
            ahead = asyncio.ensure_future(asyncio.to_thread(f.read, min(CHUNK, remaining)))
            try:
                while True:
                    chunk = await ahead
                    remaining -= len(chunk)
                    if not chunk:
                        break
                    if remaining > 0:
                        ahead = asyncio.ensure_future(asyncio.to_thread(f.read, min(CHUNK, remaining)))
                    yield chunk
                    if remaining <= 0:
                        break
            finally:
                if not ahead.done():
                    # The thread cannot be interrupted; let it finish before the file closes.
                    await asyncio.wait([ahead])

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        full = self.full(path)
        mode = "ab" if append else "wb"
        try:
            f = open(full, mode)
        except FileNotFoundError:
            if append and not os.path.isdir(os.path.dirname(full)):
                raise PathNotFound(path) from None
            os.makedirs(os.path.dirname(full), exist_ok=True)
            f = open(full, mode)
        return LocalWriter(f, full, self.commit)

    async def touch(self, path: str) -> None:
        try:
            os.utime(self.full(path))
        except FileNotFoundError:
            raise PathNotFound(path) from None

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self.full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        is_dir = (st.st_mode & 0o170000) == 0o040000
        return FileInfo(path, st.st_size, st.st_mtime, is_dir, f"{st.st_dev}:{st.st_ino}")

    async def list(self, path: str) -> list[str]:
        try:
            with os.scandir(self.full(path)) as it:
                return [f"{e.name}/" if e.is_dir() else e.name for e in it]
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None

    async def move(self, src: str, dst: str) -> None:
        full_src, full_dst = self.full(src), self.full(dst)
        if self.commit:
            await asyncio.to_thread(_fsync_file, full_src)
        try:
            os.replace(full_src, full_dst)
        except FileNotFoundError:
            if not os.path.exists(full_src):
                raise PathNotFound(src) from None
            os.makedirs(os.path.dirname(full_dst), exist_ok=True)
            os.replace(full_src, full_dst)
        if self.commit:
            await asyncio.to_thread(_fsync_dir, os.path.dirname(full_dst))

    async def link(self, src: str, dst: str) -> None:
        full_src, full_dst = self.full(src), self.full(dst)
        os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        tmp = f"{full_dst}.tmp-{uuid.uuid4().hex}"
        try:
            os.link(full_src, tmp)
        except FileNotFoundError:
            raise PathNotFound(src) from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            await asyncio.to_thread(shutil.copyfile, full_src, tmp)
        # The new holder counts as fresh for GC's delay (all links share the inode's mtime).
        os.utime(tmp)
        os.replace(tmp, full_dst)
        if self.commit:
            await asyncio.to_thread(_fsync_dir, os.path.dirname(full_dst))

    async def delete(self, path: str) -> None:
        full = self.full(path)
        try:
            os.unlink(full)
        except IsADirectoryError:
            await asyncio.to_thread(shutil.rmtree, full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        except PermissionError:
            if not os.path.isdir(full):
                raise
            await asyncio.to_thread(shutil.rmtree, full)

    async def dirs_containing(self, name: str, prune: frozenset[str]) -> builtins.list[str]:
        return await asyncio.to_thread(_dirs_containing, self.root, name, prune)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        top = self.full(path)
        entries = await asyncio.to_thread(_scan_tree, top, self.root)
        for info in entries:
            yield info


def _probe_links(root: str) -> bool:
    """Whether this filesystem takes hard links (some network and FUSE ones do not)."""
    probe = os.path.join(root, f".link-probe-{uuid.uuid4().hex}")
    try:
        with open(probe, "wb"):
            pass
        os.link(probe, probe + ".2")
        os.unlink(probe + ".2")
        return True
    except OSError:
        return False
    finally:
        _unlink_quietly(probe)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _dirs_containing(root: str, name: str, prune: frozenset[str]) -> list[str]:
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = [(e.name, e.is_dir()) for e in it]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        marked = any(n == name and not is_dir for n, is_dir in entries)
        if marked and rel:
            found.append(rel)
        for n, is_dir in entries:
            if is_dir and not n.startswith(".") and not (marked and n in prune):
                stack.append(f"{rel}/{n}" if rel else n)
    return found


def _scan_tree(top: str, root: str) -> list[FileInfo]:
    out: list[FileInfo] = []
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                rel = os.path.relpath(e.path, root)
                out.append(FileInfo(rel, st.st_size, st.st_mtime, False, f"{st.st_dev}:{st.st_ino}"))
    return out
