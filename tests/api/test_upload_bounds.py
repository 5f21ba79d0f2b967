"""Open upload sessions are bounded per repository and per store, idle ones are reaped, and
past the bound a POST gets 429 TOOMANYREQUESTS while finishing pushes goes on; on local disk
and on S3."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error, close_session, digest_of, open_session, patch_chunk, path_of, push_blob
from tests.moto import MotoServer
from tests.servers import OcistoreServer

PER_REPO, TOTAL = 4, 7
BOUNDS = {"maxUploadsPerRepository": PER_REPO, "maxUploads": TOTAL}


def storage_of(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "local":
        return {}
    moto: MotoServer = request.getfixturevalue("moto_s3")
    return {"storageDriver": moto.driver_params(moto.new_bucket())}


def start(tmp_path: Path, request: pytest.FixtureRequest, **storage: Any) -> Iterator[OcistoreServer]:
    server = OcistoreServer(tmp_path, storage={**storage_of(request.param, request), **storage}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def bounded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OcistoreServer]:
    yield from start(tmp_path, request, **BOUNDS)


@pytest.fixture(params=["local", "s3"])
def reaping(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OcistoreServer]:
    yield from start(tmp_path, request, **BOUNDS, uploadIdleTimeout="2s")


def refused(client: httpx.Client, repo: str) -> None:
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert_error(resp, 429, "TOOMANYREQUESTS")
    assert int(resp.headers["Retry-After"]) >= 1


def test_a_repository_holds_at_most_its_bound_of_sessions(bounded: OcistoreServer) -> None:
    with httpx.Client(base_url=bounded.url, timeout=30) as client:
        sessions = [open_session(client, "bound/a") for _ in range(PER_REPO)]
        refused(client, "bound/a")
        # Others are not held back, and a whole push in one request needs no session.
        open_session(client, "bound/b")
        blob = os.urandom(100)
        resp = client.post("/v2/bound/a/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob,
                           headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 201, resp.text
        # A finished and a cancelled session each make room for one more.
        done = close_session(client, sessions[0], digest_of(b"x"), b"x")
        assert done.status_code == 201, done.text
        open_session(client, "bound/a")
        refused(client, "bound/a")
        assert client.delete(path_of(sessions[1])).status_code == 204
        open_session(client, "bound/a")
        refused(client, "bound/a")


def test_the_store_holds_at_most_its_bound_of_sessions(bounded: OcistoreServer) -> None:
    with httpx.Client(base_url=bounded.url, timeout=30) as client:
        opened = [open_session(client, f"bound/r{i}") for i in range(TOTAL)]
        refused(client, "bound/another")
        # Pushes under way still finish.
        for i, location in enumerate(opened[:2]):
            data = os.urandom(1000)
            assert patch_chunk(client, location, data[:500], 0).status_code == 202
            assert close_session(client, path_of(location), digest_of(data), data[500:]).status_code == 201
            assert client.get(f"/v2/bound/r{i}/blobs/{digest_of(data)}").content == data
        open_session(client, "bound/another")


def test_idle_sessions_are_reaped_at_the_bound_and_busy_ones_kept(reaping: OcistoreServer) -> None:
    with httpx.Client(base_url=reaping.url, timeout=30) as client:
        busy = open_session(client, "reap/a")
        idle = [open_session(client, "reap/a") for _ in range(PER_REPO - 1)]
        refused(client, "reap/a")
        written = 0
        deadline = time.monotonic() + 30
        while True:
            # The busy session is written to all along, so it never looks idle.
            assert patch_chunk(client, busy, b"z" * 10, written).status_code == 202
            written += 10
            resp = client.post("/v2/reap/a/blobs/uploads/")
            if resp.status_code == 202:
                break
            assert resp.status_code == 429, resp.text
            assert time.monotonic() < deadline, "idle sessions were never reaped"
            time.sleep(0.2)
        for location in idle:
            assert_error(client.get(path_of(location)), 404, "BLOB_UPLOAD_UNKNOWN")
        status = client.get(path_of(busy))
        assert status.status_code == 204 and status.headers["Range"] == f"0-{written - 1}"
        push_blob(client, "reap/a", os.urandom(100))


def test_concurrent_posts_never_pass_the_bound_together(bounded: OcistoreServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(_: int) -> int:
        with httpx.Client(base_url=bounded.url, timeout=30) as client:
            return client.post("/v2/bound/burst/blobs/uploads/").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(3 * PER_REPO)))
    assert statuses.count(202) == PER_REPO and statuses.count(429) == 2 * PER_REPO, statuses


def test_requests_for_made_up_sessions_leave_nothing_behind(tmp_path: Path) -> None:
    """On local disk an upload session's lock is a file of its own in the store: a client
    sending requests to session ids that do not exist must not fill the store with them."""
    import uuid

    server = OcistoreServer(tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            push_blob(client, "made/up", os.urandom(10))
            locks = server.root / ".ocistore" / "locks"
            before = {p.name for p in locks.iterdir()}
            for _ in range(50):
                session = f"/v2/made/up/blobs/uploads/{uuid.uuid4()}"
                assert_error(client.patch(session, content=b"x", headers={"Content-Type": "application/octet-stream"}),
                             404, "BLOB_UPLOAD_UNKNOWN")
                assert_error(client.put(session, params={"digest": digest_of(b"x")}), 404, "BLOB_UPLOAD_UNKNOWN")
            # A session that ends with a wrong digest takes its lock along too.
            location = open_session(client, "made/up")
            assert close_session(client, location, digest_of(b"other"), b"x").status_code == 400
            assert {p.name for p in locks.iterdir()} - before == set()
    finally:
        server.stop()
