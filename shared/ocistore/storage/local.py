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
from collections.abc import AsyncIterator, Sequence

from .driver import (
    TEMP_MARK,
    FileInfo,
    FileWriter,
    PathNotFound,
    StorageDriver,
    VersionChanged,
    is_storage_full,
    same_version,
)
from .reserve import SpaceReserve
from .writebehind import WriteBehind

CHUNK = 1 << 20
INLINE_LIMIT = 256 << 10
# writev refuses more buffers than this in one call.
IOV_MAX = os.sysconf("SC_IOV_MAX")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(FileWriter):
    """Unbuffered writes on a descriptor: nothing sits in a userspace buffer, so `discard` can
    cut the file back to where it was and a failed write (a full disk) leaves no tail behind.
    Large writes are followed by write-behind (writebehind.py): the page cache holds a few
    windows of a blob, not all of it."""

    def __init__(self, fd: int, path: str, commit: bool) -> None:
        self._fd = fd
        self._path = path
        self._commit = commit
        self.size = self._initial = os.fstat(fd).st_size
        self._behind = WriteBehind(fd, self.size)

    async def write(self, data: bytes) -> None:
        await self.write_parts((data,))

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        """One `writev` for all the parts: a received piece reaches the disk without a join."""
        size = sum(len(part) for part in parts)
        if size > INLINE_LIMIT:
            await asyncio.to_thread(self._write_large, parts, self.size + size)
        else:
            _write_all(self._fd, parts)
        self.size += size

    def _write_large(self, parts: Sequence[bytes], end: int) -> None:
        _write_all(self._fd, parts)
        self._behind.advance(end)

    async def close(self) -> None:
        try:
            if self._commit:
                await asyncio.to_thread(os.fsync, self._fd)
        finally:
            os.close(self._fd)

    async def cancel(self) -> None:
        os.close(self._fd)
        _unlink_quietly(self._path)

    async def discard(self) -> None:
        try:
            os.ftruncate(self._fd, self._initial)
            self.size = self._initial
        finally:
            os.close(self._fd)


def _write_all(fd: int, parts: Sequence[bytes]) -> None:
    """os.writev may write less than asked (a disk filling up): go on until all is written or it fails."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class LocalDriver(StorageDriver):
    name = "local"
    moves_are_cheap = True

    def __init__(self, root: str, commit: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.commit = commit
        os.makedirs(self.root, exist_ok=True)
        self.supports_links = _probe_links(self.root)
        self.reserve = SpaceReserve(self.root)

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

    async def replace_content(self, path: str, data: bytes, expected: FileInfo | None) -> None:
        """Callers hold the path's lock, a flock every writer of the store takes: the check then
        stands until the rename, and fences out any writer that did not take it."""
        try:
            current: FileInfo | None = await self.stat(path)
        except PathNotFound:
            current = None
        if not same_version(current, expected):
            raise VersionChanged(path)
        try:
            await self.put_content(path, data)
        except OSError as exc:
            # An index rewrite is how tags and manifests are deleted: on a full disk it may
            # spend the reserve, so space can still be freed through the API.
            if not is_storage_full(exc) or not self.reserve.release():
                raise
            await self.put_content(path, data)
        self.reserve.ensure()

    def _put_sync(self, path: str, data: bytes) -> None:
        full = self.full(path)
        directory = os.path.dirname(full)
        tmp = f"{full}{TEMP_MARK}{uuid.uuid4().hex}"
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
        if append:
            # Never O_CREAT: an append to a session that was cancelled meanwhile must not revive it.
            try:
                fd = os.open(full, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFound(path) from None
            return LocalWriter(fd, full, self.commit)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            fd = os.open(full, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            fd = os.open(full, flags, 0o644)
        return LocalWriter(fd, full, self.commit)

    async def open_local(self, path: str) -> int | None:
        try:
            return os.open(self.full(path), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None

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
        return FileInfo(path, st.st_size, st.st_mtime, is_dir, f"{st.st_dev}:{st.st_ino}", st.st_nlink)

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
        for attempt in range(3):
            try:
                os.replace(full_src, full_dst)
                break
            except FileNotFoundError:
                if not os.path.exists(full_src):
                    raise PathNotFound(src) from None
                if attempt == 2:
                    raise
                # The directory is missing, or GC removed it (empty) between makedirs and here.
                os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        if self.commit:
            await asyncio.to_thread(_fsync_dir, os.path.dirname(full_dst))

    async def link(self, src: str, dst: str) -> None:
        full_src, full_dst = self.full(src), self.full(dst)
        os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        tmp = f"{full_dst}{TEMP_MARK}{uuid.uuid4().hex}"
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

    async def dirs_containing(self, markers: frozenset[str], prune: frozenset[str]) -> builtins.list[str]:
        return await asyncio.to_thread(_dirs_containing, self.root, markers, prune)

    async def remove_empty_dir(self, path: str) -> None:
        try:
            os.rmdir(self.full(path))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise

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


def _dirs_containing(root: str, markers: frozenset[str], prune: frozenset[str]) -> list[str]:
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = [(e.name, e.is_dir()) for e in it]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        marked = any((f"{n}/" if is_dir else n) in markers for n, is_dir in entries)
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
                out.append(FileInfo(rel, st.st_size, st.st_mtime, False, f"{st.st_dev}:{st.st_ino}", st.st_nlink))
    return out
