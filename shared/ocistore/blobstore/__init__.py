"""The blob store: the only code that touches paths under a repository's `blobs/`."""

from .reconcile import ReconcileReport, reconcile
from .store import BlobRef, BlobStore

__all__ = ["BlobRef", "BlobStore", "ReconcileReport", "reconcile"]
