"""Fixtures of the S3 registry suite: a fresh bucket per test on the session's moto server,
real `ocistore serve`/`ocistore topology` processes over it, and a look at the bucket's
objects (keys and sizes), since dedupe on S3 is only visible there: placeholders are 0 bytes.

A failing test gets the tail of every process log it started, because an HTTP answer alone
rarely says what the server did with S3.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from tests.moto import REGION, MotoServer
from tests.servers import BIN

# The DynamoDB cache takes its keys from the standard AWS chain, as an operator's would;
# the server processes inherit this environment.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

CLI_TIMEOUT = 60.0


class HasLog(Protocol):
    def log(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class Launched:
    """The processes a test started: stopped at teardown, their logs attached on failure."""

    processes: list[HasLog] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, process: Any) -> Any:
        self.processes.append(process)
        return process


@pytest.fixture
def launched() -> Iterator[Launched]:
    procs = Launched()
    try:
        yield procs
    finally:
        for p in reversed(procs.processes):
            p.stop()


@pytest.fixture
def bucket(moto_s3: MotoServer) -> Iterator[str]:
    """A bucket of the test's own, emptied and removed afterwards."""
    name = moto_s3.new_bucket()
    try:
        yield name
    finally:
        moto_s3.remove_bucket(name)


@pytest.fixture(params=["embedded", "dynamodb"])
def cache_keys(request: pytest.FixtureRequest, moto_s3: MotoServer) -> dict[str, Any]:
    """The storage keys selecting the dedupe cache: the local embedded one, or DynamoDB on moto."""
    if request.param == "embedded":
        return {"dedupe": True}
    return {"dedupe": True, "remoteCache": True,
            "cacheDriver": {"name": "dynamodb", "endpoint": moto_s3.url, "region": REGION,
                            "cacheTablename": f"s3dedupe{uuid.uuid4().hex[:10]}"}}


def blob_objects(moto: MotoServer, bucket: str, digest: str) -> dict[str, int]:
    """Every object of the bucket holding `digest` as a repository blob: key -> size."""
    algorithm, encoded = digest.split(":", 1)
    suffix = f"/blobs/{algorithm}/{encoded}"
    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: int(o["Size"]) for page in pages for o in page.get("Contents", [])
            if o["Key"].endswith(suffix)}


def object_digest(moto: MotoServer, bucket: str, key: str) -> str:
    """The sha256 of an object's bytes as S3 holds them."""
    body = moto.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def repo_of(key: str) -> str:
    """The repository a blob key belongs to (no rootdirectory prefix in this suite)."""
    return key.rsplit("/blobs/", 1)[0]


def run_cli(launched: Launched, *args: str) -> subprocess.CompletedProcess[str]:
    """`ocistore ARGS...` to completion; its output is kept for a failure report."""
    done = subprocess.run([str(BIN / "ocistore"), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    launched.notes.append(f"$ ocistore {' '.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
    return done
