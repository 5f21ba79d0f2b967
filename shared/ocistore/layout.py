"""Where things live inside a store: one OCI Image Layout per repository.

`<repo>/oci-layout`, `<repo>/index.json`, and upload sessions in `<repo>/.uploads/<id>`,
built here from an already validated name or upload id; `<repo>/blobs/<alg>/<hex>` is the
blob store's (`blobstore/paths.py`), so nothing else concatenates storage keys.
"""

from __future__ import annotations

import json
import re

INDEX_FILE = "index.json"
LAYOUT_FILE = "oci-layout"
UPLOADS_DIR = ".uploads"
BLOBS_DIR = "blobs"
LAYOUT_CONTENT = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
EMPTY_INDEX = {"schemaVersion": 2, "manifests": []}

UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # fullmatch only


def index_path(repo: str) -> str:
    return f"{repo}/{INDEX_FILE}"


def layout_path(repo: str) -> str:
    return f"{repo}/{LAYOUT_FILE}"


def uploads_dir(repo: str) -> str:
    return f"{repo}/{UPLOADS_DIR}"


def upload_path(repo: str, upload_id: str) -> str:
    return f"{repo}/{UPLOADS_DIR}/{upload_id}"
