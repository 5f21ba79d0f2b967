"""A stored copy whose bytes no longer name their digest, over every cache: scrub finds it,
the registry stops serving it, nothing is linked to it, and an honest push repairs it.

The copy is damaged on disk behind the registry's back (bit rot, a bad restore): that is
the one way left to plant wrong bytes under a digest once upload sessions have one writer.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import push_blob
from tests.servers import BIN, OcistoreServer, blob_file, wait_until

LAYER = 256 << 10
# The server rereads scrub's damage markers every few seconds (damage.REFRESH).
NOTICED_WITHIN = 30.0


def flip_a_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(LAYER // 2)
        byte = f.read(1)
        f.seek(LAYER // 2)
        f.write(bytes([byte[0] ^ 0xFF]))


def truncate_half(path: Path) -> None:
    os.truncate(path, LAYER // 2)


DAMAGES: dict[str, Callable[[Path], None]] = {"flipped-byte": flip_a_byte, "truncated": truncate_half}


@pytest.fixture
def server(workdir: Path, cache_storage: dict[str, Any]) -> Iterator[OcistoreServer]:
    srv = OcistoreServer(workdir, storage=cache_storage).start()
    try:
        yield srv
    finally:
        srv.stop()


def scrub(server: OcistoreServer) -> str:
    """`ocistore scrub`'s output; it exits 1 when it found a problem, 0 when none."""
    done = subprocess.run([str(BIN / "ocistore"), "scrub", str(server.config_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == (0 if "0 problems" in done.stdout else 1), done.stdout + done.stderr
    return done.stdout


def refused_as_damaged(client: httpx.Client, repo: str, digest: str) -> Callable[[], bool]:
    def check() -> bool:
        resp = client.get(f"/v2/{repo}/blobs/{digest}")
        return resp.status_code == 404 and "damaged" in resp.text
    return check


def serves(client: httpx.Client, repo: str, digest: str, data: bytes) -> Callable[[], bool]:
    return lambda: client.get(f"/v2/{repo}/blobs/{digest}").content == data


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_copy_is_refused_never_linked_to_and_repaired_by_an_honest_push(
        server: OcistoreServer, damage: str) -> None:
    layer = os.urandom(LAYER)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        digest = push_blob(client, "dd/first", layer)
        push_blob(client, "dd/second", layer)  # a dedupe holder of the same bytes
        DAMAGES[damage](blob_file(server.root, "dd/first", digest))

        assert "0 problems" not in scrub(server)
        for repo in ("dd/first", "dd/second"):
            assert wait_until(refused_as_damaged(client, repo, digest), NOTICED_WITHIN), repo
            head = client.head(f"/v2/{repo}/blobs/{digest}")
            assert head.status_code == 404
        assert "damaged" in server.log()

        # A mount from a damaged copy must not link to it: the client is told to upload.
        mount = client.post("/v2/dd/mounted/blobs/uploads/", params={"mount": digest, "from": "dd/first"})
        assert mount.status_code == 202, mount.text
        anywhere = client.post("/v2/dd/mounted-any/blobs/uploads/", params={"mount": digest})
        assert anywhere.status_code == 202, anywhere.text

        # An honest push elsewhere gets its own bytes back, and repairs every holder.
        push_blob(client, "dd/honest", layer)
        assert client.get(f"/v2/dd/honest/blobs/{digest}").content == layer
        for repo in ("dd/first", "dd/second"):
            assert wait_until(serves(client, repo, digest, layer), NOTICED_WITHIN), repo
        assert blob_file(server.root, "dd/first", digest).read_bytes() == layer

        # And a second scrub finds nothing left to report.
        assert "0 problems" in scrub(server)
