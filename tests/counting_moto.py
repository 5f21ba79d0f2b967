"""moto's server mode with a count of every S3 request, by bucket and S3 action.

Each registry under test has a bucket of its own, so the count per bucket is the count per server:
the peer's requests are counted exactly like ocistore's, from what arrives on the wire (a counting
WSGI layer around moto's own application costs microseconds, where a proxy would add a hop to every
request). `GET /_counts/requests` answers the counts so far as JSON, `{bucket: {action: n}}`; the
bench reads them around each timed span, and tests/s3/test_s3_requests.py around each operation
whose cost it holds to a bound. `CountingMoto` starts it as `MotoServer` starts moto_server.

    python -c 'from tests.counting_moto import main; main()' -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

from tests.moto import MotoServer

COUNTS_PATH = "/_counts/requests"
StartResponse = Callable[..., Any]


def s3_action(method: str, path: str, query: str, headers: dict[str, str]) -> tuple[str, str] | None:
    """(bucket, S3 action) of a path-style request, or None for one that is not S3's (moto's own API).

    The action is the name the S3 API gives the request, told apart the way S3 does: by method,
    whether a key follows the bucket, the sub-resource in the query and the copy-source header.
    """
    if path.startswith("/moto-api") or path == COUNTS_PATH:
        return None
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    copy = "x-amz-copy-source" in headers
    if not key:
        bucket_actions = {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}
        if method == "GET":
            action = ("ListObjectsV2" if params.get("list-type") == ["2"] else "ListMultipartUploads"
                      if "uploads" in params else "GetBucketLocation" if "location" in params else "ListObjects")
        elif method == "POST" and "delete" in params:
            action = "DeleteObjects"
        else:
            action = bucket_actions.get(method, f"{method} bucket")
    elif method == "PUT":
        part = "partNumber" in params
        action = ("UploadPartCopy" if copy else "UploadPart") if part else ("CopyObject" if copy else "PutObject")
    elif method == "POST":
        action = "CreateMultipartUpload" if "uploads" in params else "CompleteMultipartUpload"
    elif method == "DELETE":
        action = "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    elif method == "GET":
        action = "ListParts" if "uploadId" in params else "GetObject"
    else:
        action = {"HEAD": "HeadObject"}.get(method, f"{method} object")
    return bucket, action


class Counting:
    """WSGI middleware: count each S3 request, then hand it to moto unchanged."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        """Wrap `app`; counts start at zero."""
        self.app = app
        self.counts: dict[str, Counter[str]] = {}
        self.lock = threading.Lock()  # werkzeug serves each request on a thread of its own

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer the counts at COUNTS_PATH; otherwise count and pass on."""
        path = environ.get("PATH_INFO", "")
        if path == COUNTS_PATH:
            with self.lock:
                body = json.dumps({b: dict(c) for b, c in self.counts.items()}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        found = s3_action(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), headers)
        if found is not None:
            with self.lock:
                self.counts.setdefault(found[0], Counter())[found[1]] += 1
        return self.app(environ, start_response)


class CountingMoto(MotoServer):
    """moto's server mode behind this counting layer, in this environment's Python."""

    def command(self) -> list[str]:
        """This module's `main` in place of `moto_server`: same server, same options."""
        root = str(Path(__file__).resolve().parent.parent)
        return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
                "from tests.counting_moto import main; main()"]

    def requests(self, bucket: str) -> dict[str, int]:
        """The S3 requests counted in `bucket` so far, by action."""
        with urllib.request.urlopen(f"{self.url}{COUNTS_PATH}", timeout=10) as resp:
            counts: dict[str, dict[str, int]] = json.load(resp)
        return counts.get(bucket, {})


def main(argv: list[str] | None = None) -> None:
    """Serve moto as `moto_server -H host -p port` does, behind the counting layer."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server sets it
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    moto = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, Counting(moto), threaded=True, request_handler=MotoRequestHandler)


def _exit(signum: int, frame: FrameType | None) -> None:
    """Stop as moto_server does on a signal."""
    sys.exit(0)

