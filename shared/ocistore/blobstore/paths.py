"""Where a repository's blobs live: `<repo>/blobs/<alg>/<hex>`.

Only the blob store builds or parses these paths (an import contract in pyproject.toml
keeps it so), which is what makes it the one owner of every blob.
"""

from __future__ import annotations

import re

from ..digests import Digest
from ..layout import BLOBS_DIR

ALGORITHMS = ("sha256", "sha512")
_BLOB_PATH = re.compile(r"(?P<repo>.+)/blobs/(?P<alg>sha256|sha512)/(?P<hex>[0-9a-f]{64}|[0-9a-f]{128})")


def blob_path(repo: str, digest: Digest) -> str:
    return f"{repo}/{BLOBS_DIR}/{digest.algorithm}/{digest.encoded}"


def blobs_root(repo: str) -> str:
    return f"{repo}/{BLOBS_DIR}"


def blob_digest(path: str) -> str | None:
    """The digest a blob path holds, or None for any other file of the store (temp files too)."""
    m = _BLOB_PATH.fullmatch(path)
    if m is None or len(m.group("hex")) != (64 if m.group("alg") == "sha256" else 128):
        return None
    return f"{m.group('alg')}:{m.group('hex')}"


def digest_in(repo: str, path: str) -> Digest | None:
    """The digest of `<repo>/blobs/<alg>/<hex>`; None for anything else, such as the files of a
    repository nested as `<repo>/blobs/...`."""
    prefix = f"{repo}/{BLOBS_DIR}/"
    if not path.startswith(prefix) or path[len(prefix):].count("/") != 1:
        return None
    found = blob_digest(path)
    return Digest.parse(found) if found is not None else None

