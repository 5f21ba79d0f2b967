"""Every error answers in the spec's `{"errors":[...]}` envelope: the framework's own 404 and
405, a failure nobody anticipated (500) and a full disk (507). None leaks a path or a
traceback, and each leaves a keep-alive connection usable for the next request."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    build_image,
    digest_of,
    login_headers,
    open_session,
    path_of,
    push_blob,
    push_manifest,
    push_random_image,
)
from tests.conftest import Deployment
from tests.servers import OcistoreServer

ROUTER_ANSWERS = [
    # (method, path, status, Allow for 405)
    ("GET", "/nope", 404, None),
    ("GET", "/v2/test/repo/unknown/thing", 404, None),
    ("DELETE", "/v2/", 405, {"GET", "HEAD"}),
    ("PUT", "/v2/_catalog", 405, {"GET"}),
    ("PATCH", "/v2/test/repo/tags/list", 405, {"GET"}),
    ("POST", "/v2/test/repo/manifests/latest", 405, {"GET", "HEAD", "PUT", "DELETE"}),
    ("PUT", "/v2/test/repo/blobs/sha256:" + "a" * 64, 405, {"GET", "HEAD", "DELETE"}),
    ("DELETE", "/v2/test/repo/referrers/sha256:" + "a" * 64, 405, {"GET"}),
]


class KeepAlive:
    """One HTTP/1.1 connection for several requests, to prove an error did not close it."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
        self.login = login_headers(base_url)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers={**self.login, **(headers or {})})
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def still_usable(self) -> None:
        status, _, body = self.request("GET", "/v2/")
        assert status == 200 and json.loads(body) == {}

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def conn(registry: Deployment) -> Iterator[KeepAlive]:
    c = KeepAlive(registry.url)
    try:
        yield c
    finally:
        c.close()


def assert_envelope(status_line: int, headers: dict[str, str], body: bytes, status: int, secret: str) -> str:
    """The spec's error body; returns the first code. No path of the store nor a traceback in it."""
    assert status_line == status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    errors = json.loads(body)["errors"]
    assert isinstance(errors, list) and errors and {"code", "message", "detail"} <= errors[0].keys()
    text = body.decode()
    assert "Traceback" not in text and secret not in text and "/tmp" not in text, text
    return str(errors[0]["code"])


@pytest.mark.parametrize(("method", "path", "status", "allow"), ROUTER_ANSWERS,
                         ids=[f"{m}-{p[:30]}" for m, p, _, _ in ROUTER_ANSWERS])
def test_the_routers_own_answers_are_in_the_envelope(conn: KeepAlive, registry: Deployment, method: str,
                                                     path: str, status: int, allow: set[str] | None) -> None:
    got, headers, body = conn.request(method, path)
    code = assert_envelope(got, headers, body, status, str(registry.workdir))
    if allow is None:
        assert code in ("UNSUPPORTED", "UNKNOWN", "NAME_UNKNOWN"), code
    else:
        assert code == "UNSUPPORTED"
        assert {m.strip() for m in headers["allow"].split(",")} == allow, headers
    conn.still_usable()


def test_an_unexpected_failure_is_a_500_in_the_envelope_and_the_connection_survives(
        fresh_server: OcistoreServer) -> None:
    """A store the registry cannot write where it must (a file where the upload directory
    belongs) fails in a way no handler expects."""
    with httpx.Client(base_url=fresh_server.url, timeout=30) as client:
        push_random_image(client, "broken/app", "v1")
    uploads = fresh_server.repo_path("broken/app") / ".uploads"
    if uploads.exists():
        for f in uploads.iterdir():
            f.unlink()
        uploads.rmdir()
    uploads.write_bytes(b"not a directory")
    conn = KeepAlive(fresh_server.url)
    try:
        status, headers, body = conn.request("POST", "/v2/broken/app/blobs/uploads/")
        assert assert_envelope(status, headers, body, 500, str(fresh_server.root)) == "UNKNOWN"
        conn.still_usable()
    finally:
        conn.close()
    assert "Traceback" in fresh_server.log()
    with httpx.Client(base_url=fresh_server.url, timeout=30) as client:
        assert client.get("/v2/broken/app/manifests/v1").status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real full disk, not a simulated one."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_507_in_the_envelope_and_loses_nothing_stored(tmp_path: Path, small_disk: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir()
    server = OcistoreServer(workdir, storage={"rootDirectory": str(small_disk / "data")}).start()
    try:
        small = os.urandom(1000)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            kept = push_blob(client, "full/app", small)
            image = push_random_image(client, "full/app", "v1")
            big = os.urandom(6 << 20)
            conn = KeepAlive(server.url)
            try:
                location = path_of(open_session(client, "full/app"))
                status, headers, body = conn.request("PUT", f"{location}?digest={digest_of(big)}", big,
                                                     {"Content-Type": "application/octet-stream"})
                assert assert_envelope(status, headers, body, 507, str(small_disk)) == "UNKNOWN"
                assert "full" in json.loads(body)["errors"][0]["message"]
                assert "retry-after" in headers
            finally:
                conn.close()
            assert_error(client.head(f"/v2/full/app/blobs/{digest_of(big)}"), 404, None)
            # The part of the upload that fitted is given back: a small push fits again.
            push_blob(client, "full/app", os.urandom(1000))

            # Filled to the last byte by something else, a tag push fails whole, index intact.
            other = build_image(client, "full/app")
            filler = small_disk / "filler"
            with open(filler, "wb") as f, pytest.raises(OSError):
                while True:
                    f.write(os.urandom(64 << 10))
                    f.flush()
                    os.fsync(f.fileno())
            resp = client.put("/v2/full/app/manifests/v2", content=other.manifest,
                              headers={"Content-Type": other.media_type})
            assert_error(resp, 507, "UNKNOWN")
            assert client.get(f"/v2/full/app/blobs/{kept}").content == small
            assert client.get("/v2/full/app/manifests/v1").content == image.manifest
            assert client.get("/v2/full/app/tags/list").json()["tags"] == ["v1"]
            # Space can still be freed through the API: deleting a tag rewrites the index.
            assert client.delete("/v2/full/app/manifests/v1").status_code == 202
            assert client.get("/v2/full/app/tags/list").json()["tags"] == []
            assert client.get(f"/v2/full/app/manifests/{image.digest}").content == image.manifest
            filler.unlink()
            push_manifest(client, "full/app", "v2", other.manifest, other.media_type)
    finally:
        server.stop()
