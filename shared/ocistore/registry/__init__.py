"""Registry semantics over a storage driver, one concern per module.

`uploads`, `manifests`, `tags`, `referrers` and `catalog` are plain async
functions taking a `Store`; the API, the CLI and the workers all call these.
"""

from .registry import Registry
from .store import Store

__all__ = ["Registry", "Store"]
