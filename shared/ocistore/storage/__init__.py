"""Storage drivers: byte-level access to one store's root, nothing OCI-specific."""

from .driver import FileInfo, FileWriter, PathNotFound, StorageDriver, VersionChanged, is_storage_full

__all__ = ["FileInfo", "FileWriter", "PathNotFound", "StorageDriver", "VersionChanged", "is_storage_full"]
