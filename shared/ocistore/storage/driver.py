"""The driver interface every storage backend implements.

Modelled on CNCF Distribution's storagedriver: paths are `/`-separated keys relative to
the store's root, the repository layout is kept outside the drivers, and a missing path
is always the typed `PathNotFound`, so registry logic never inspects OS or S3 errors.
"""

from __future__ import annotations

import builtins
import errno
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


class PathNotFound(FileNotFoundError):
    """The path does not exist in the store."""


# What a driver writes next to a file before renaming it into place (`<name>.tmp-<hex>`); one
# a killed process left behind is collected by GC and reported by scrub.
TEMP_MARK = ".tmp-"


def is_temporary(path: str) -> bool:
    return TEMP_MARK in path.rsplit("/", 1)[-1]


class VersionChanged(Exception):
    """A fenced write found the file no longer the version its writer read."""


def same_version(current: FileInfo | None, expected: FileInfo | None) -> bool:
    """Whether a file is still the version once stat'ed (both None: still absent)."""
    if current is None or expected is None:
        return current is expected
    return (current.ident, current.size, current.mtime) == (expected.ident, expected.size, expected.mtime)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_storage_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space (or quota), as opposed to any other fault."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool = False
    # Identity of the stored bytes (inode on disk): equal ids mean one physical copy.
    ident: str = ""
    # Names of those bytes (hard links on disk; always 1 where storage has no links).
    links: int = 1


class FileWriter(ABC):
    """Appends to one path; bytes become durable (per `commit`) only on `close`."""

    size: int

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        """Write `parts` in order; a driver that can gather them (`writev`) spares the join."""
        await self.write(parts[0] if len(parts) == 1 else b"".join(parts))

    @abstractmethod
    async def close(self) -> None:
        """Flush (and fsync under `commit`) and keep what was written."""

    @abstractmethod
    async def cancel(self) -> None:
        """Drop the file altogether."""

    @abstractmethod
    async def discard(self) -> None:
        """Close, keeping only what the file held before this writer wrote to it.

        A refused chunk (its bytes disagree with its declared range) must leave an upload
        session exactly as it was, so that the next chunk can continue from the same offset.
        """


class StorageDriver(ABC):
    name: str
    # Whether `link` shares bytes (hard links) rather than copying them: dedupe needs it.
    supports_links: bool = False
    # Whether `move` is a rename (no copy, no new file): a small pushed body is then cheaper
    # written to its session and moved than held in memory and written anew (a file creation
    # costs more than the rest of a small push on ext4).
    moves_are_cheap: bool = False
    # Whether a directory at a path stands in the way of a file there (on disk it does; S3 keys
    # `a` and `a/b` coexist, so writing `a` never meets, nor touches, what lies below it).
    dirs_block_files: bool = True

    async def open_local(self, path: str) -> int | None:
        """A read-only descriptor of the file, when it lies on a local filesystem (a pull
        then goes from file to socket with sendfile); None for object stores."""
        return None

    @abstractmethod
    async def get_content(self, path: str) -> bytes: ...

    @abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Replace `path` atomically: readers see the old bytes or the new, never a mix."""

    @abstractmethod
    async def replace_content(self, path: str, data: bytes, expected: FileInfo | None) -> FileInfo | None:
        """`put_content`, fenced: only while `path` is still the version `expected` (absent
        when None), else VersionChanged and nothing is written.

        Returns the version written when the write's answer tells it (S3's ETag), so a caller
        that remembers it need not stat again; None when only a stat would tell."""

    @abstractmethod
    def read_stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream `length` bytes (to the end when None) from `offset`."""

    @abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter: ...

    @abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    async def stat_file(self, path: str) -> FileInfo:
        """The file at `path`; PathNotFound when there is none, a directory there included.

        What a blob or a document is read through: where telling a directory from nothing
        costs a request of its own (S3), a caller that only wants a file does not pay it."""
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        return info

    async def read_version(self, path: str, known: FileInfo | None = None,
                           max_bytes: int | None = None) -> tuple[FileInfo, bytes | None]:
        """A file's current version and its bytes, in one request where storage allows.

        The version is `known` itself, with no bytes, while the file is still that version (the
        caller holds its bytes); the bytes are None too when the file is larger than `max_bytes`.
        PathNotFound when there is no file (a directory counts as none)."""
        info = await self.stat_file(path)
        if known is not None and same_version(info, known):
            return known, None
        if max_bytes is not None and info.size > max_bytes:
            return info, None
        return info, await self.get_content(path)

    async def create_content(self, path: str, data: bytes) -> bool:
        """Write `path` unless a file is there: True when written, False (nothing written) when one
        is.  One conditional write where storage has them (S3); elsewhere a look, then a write, so
        only for bytes that may replace what a racing writer put there (a verified document)."""
        try:
            await self.stat_file(path)
        except PathNotFound:
            await self.put_content(path, data)
            return True
        return False

    async def delete_file(self, path: str, info: FileInfo) -> None:
        """Remove the file `info` describes, read by a caller whose lock keeps it so, without
        looking at it again where the description suffices (S3); nothing when already gone."""
        try:
            await self.delete(path)
        except PathNotFound:
            pass

    @abstractmethod
    async def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sub-directories with a trailing `/`
        (as S3 shows common prefixes), so a walk needs no stat per child.  PathNotFound when
        absent."""

    @abstractmethod
    async def move(self, src: str, dst: str) -> None:
        """Rename `src` over `dst`, replacing it atomically."""

    @abstractmethod
    async def link(self, src: str, dst: str) -> None:
        """Make `dst` hold the same bytes as `src` (a hard link on disk, a copy elsewhere).

        `dst` is then as fresh as a new file: its modification time is now.
        """

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Remove a file or a whole directory tree (PathNotFound when absent)."""

    @abstractmethod
    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file below `path`, depth first; nothing when `path` is absent."""

    async def dirs_containing(self, markers: frozenset[str], prune: frozenset[str]) -> builtins.list[str]:
        """Every directory below the root holding an entry named in `markers`, written as `list`
        writes them (`index.json` for a file, `.uploads/` for a directory).

        Hidden directories are not descended into, and neither are the children named in
        `prune` of a marked directory.  Drivers may override this walk with a faster one.
        """
        found: builtins.list[str] = []
        stack = [""]
        while stack:
            prefix = stack.pop()
            try:
                children = await self.list(prefix)
            except PathNotFound:
                continue
            marked = not markers.isdisjoint(children)
            if marked and prefix:
                found.append(prefix)
            for child in children:
                sub = child[:-1]
                if child.endswith("/") and not sub.startswith(".") and not (marked and sub in prune):
                    stack.append(f"{prefix}/{sub}" if prefix else sub)
        return found

    @abstractmethod
    async def touch(self, path: str) -> None:
        """Make an existing file count as new (its modification time now): GC's delay then spares it."""

    async def close(self) -> None:
        """Release what the driver holds in the running event loop (connections)."""
        return None

    async def remove_empty_dir(self, path: str) -> None:
        """Remove a directory if it is empty; anything else leaves it (S3 has no directories)."""
        return None

    async def abort_stale_multipart_uploads(self, older_than: float) -> int:
        """Abort the backend's own unfinished uploads older than `older_than` seconds (GC)."""
        return 0

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except PathNotFound:
            return False
        return True
