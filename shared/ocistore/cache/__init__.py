"""The holder index (zot's dedupe "cache"): which paths of a store hold the bytes of a digest.

zot's model: per digest one *original* holder plus the set of all holders.  Deleting a
holder promotes another to original, so the bytes survive while anyone holds them.
Three drivers behind one interface, chosen by `cacheDriver`: `embedded` (SQLite at
`<rootDirectory>/cache.db`; zot's `boltdb` name is an alias), `redis`, `dynamodb`.
"""

from .base import HolderIndex, open_cache

__all__ = ["HolderIndex", "open_cache"]
