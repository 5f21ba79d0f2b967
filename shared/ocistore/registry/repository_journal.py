"""How processes that share a store without Redis tell each other that repositories came or went.

Without Redis each process keeps its repository index in memory, yet others write the same
store: `ocistore gc` run by hand, a second `ocistore serve`, the workers of a topology. Each
of them appends one line per repository it creates (`+name`) or removes (`-name`) to a journal
beside the store's locks, with O_APPEND (lines far below PIPE_BUF land whole, never
interleaved). Before a page, a process reads what was appended since it last looked: one stat
when nothing changed. A journal that was replaced (compacted at a start-up) or cut short
tells the reader its offset means nothing any more: it walks the store again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# A start-up that finds the journal past this replaces it with an empty one.
COMPACT_BYTES = 4 << 20


@dataclass(frozen=True)
class Change:
    name: str
    added: bool


class Journal:
    """One store's journal, read by one process from `offset` on."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ident: tuple[int, int] | None = None
        self._offset = 0

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def append(self, name: str, added: bool) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{'+' if added else '-'}{name}\n".encode())
        finally:
            os.close(fd)

    def start(self) -> None:
        """Before a walk of the store: what is appended from now on is news after it. A journal
        grown large is replaced here, which sends every other reader back to a walk."""
        st = self._stat()
        if st is not None and st.st_size > COMPACT_BYTES:
            fresh = f"{self.path}.new-{os.getpid()}"
            with open(fresh, "wb"):
                pass
            os.replace(fresh, self.path)
            st = self._stat()
        self._ident = None if st is None else (st.st_dev, st.st_ino)
        self._offset = 0 if st is None else st.st_size

    def news(self) -> list[Change] | None:
        """The changes appended since the last look, in order; None when the journal is not the
        one this reader was reading (replaced, or cut short): walk the store again."""
        st = self._stat()
        if st is None:
            return [] if self._ident is None else None
        ident = (st.st_dev, st.st_ino)
        if self._ident is None:
            self._ident, self._offset = ident, 0  # created since: everything in it is news
        if ident != self._ident or st.st_size < self._offset:
            return None
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next look
        self._offset += len(complete)
        return [Change(line[1:], line[0] == "+") for line in complete.decode(errors="replace").splitlines()
                if len(line) > 1 and line[0] in "+-"]
