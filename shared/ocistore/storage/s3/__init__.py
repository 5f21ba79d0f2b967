"""The S3 driver (aioboto3), in parts: `calls` (the client and every request), `writer` (one
object's upload), `pieces` (ranged reads, appended objects, copies) and `driver` (the interface).
"""

from .driver import S3Driver
from .writer import S3Writer

__all__ = ["S3Driver", "S3Writer"]
