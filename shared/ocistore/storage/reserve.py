"""A little space held back on a local store, so a full disk can still be emptied.

Deleting a tag or a manifest rewrites index.json, and on a full filesystem even that small
write fails: the API could then free nothing.  So each local store keeps a file of
preallocated blocks (`.ocistore/reserve`); when an index rewrite meets ENOSPC the reserve is
given up and the write tried again, and the reserve is taken back once space allows.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("ocistore.storage")

RESERVE_FILE = ".ocistore/reserve"
MIN_BYTES, MAX_BYTES = 64 << 10, 4 << 20
RETRY_EVERY = 10.0


class SpaceReserve:
    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, RESERVE_FILE)
        self._tried = float("-inf")
        try:
            fs = os.statvfs(root)
            self.size = max(MIN_BYTES, min(MAX_BYTES, fs.f_blocks * fs.f_frsize // 100))
        except OSError:
            self.size = MIN_BYTES
        self.ensure()

    def ensure(self) -> None:
        """Take the reserve (back), at most every RETRY_EVERY seconds while it cannot be had."""
        if os.path.exists(self.path) or time.monotonic() - self._tried < RETRY_EVERY:
            return
        self._tried = time.monotonic()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.replace(self.path + ".new", self.path)
        except OSError:
            try:
                os.unlink(self.path + ".new")
            except OSError:
                pass

    def release(self) -> bool:
        """Give the reserved blocks back to the filesystem; False when there were none."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        log.warning("store at %s is full: its reserve of %d bytes was used to rewrite an index",
                    os.path.dirname(os.path.dirname(self.path)), self.size)
        return True
