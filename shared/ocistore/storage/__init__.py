"""Storage drivers: byte-level access to one store's root, nothing OCI-specific."""

from .driver import (
    TEMP_MARK,
    FileInfo,
    FileWriter,
    PathNotFound,
    StorageDriver,
    VersionChanged,
    is_storage_full,
    is_temporary,
)

__all__ = [
    "TEMP_MARK",
    "FileInfo",
    "FileWriter",
    "PathNotFound",
    "StorageDriver",
    "VersionChanged",
    "is_storage_full",
    "is_temporary",
]
