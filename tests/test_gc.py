"""Garbage collection without Redis: `ocistore gc` in the foreground and `ocistore serve`'s own worker.

What GC removes is what no tag reaches, once older than `gcDelay`; what it keeps matters more
(a tagged image, an index's children, a live subject's referrers, a push in flight), since a
wrong deletion loses data.  Stores are filled through a real `ocistore serve` and collected by
the real command; where the server's in-process GC would race the command, the server is
stopped first (a deletion schedules that GC `gcDelay` later).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_EMPTY,
    Image,
    digest_of,
    open_session,
    patch_chunk,
    path_of,
    push_blob,
    push_index,
    push_random_image,
)
from tests.servers import BIN, OcistoreServer

# Long enough that nothing ages past it while a command starts on a loaded machine; what a
# test needs old is made old by its files' times (`past_gc_delay`).
GC_DELAY = 30.0
REF_NAME = "org.opencontainers.image.ref.name"
SIGNATURE = "application/vnd.example.signature.v1"


def new_repo() -> str:
    return f"gc/{uuid.uuid4().hex[:10]}"


def blob_file(server: OcistoreServer, repo: str, digest: str) -> Path:
    algorithm, encoded = digest.split(":", 1)
    return server.root / repo / "blobs" / algorithm / encoded


def image_digests(image: Image) -> list[str]:
    """Everything an image put on disk: manifest, config, layers."""
    return [image.digest, digest_of(image.config), *(digest_of(layer) for layer in image.layers)]


def size_on_disk(server: OcistoreServer, repo: str, digests: list[str]) -> int:
    return sum(blob_file(server, repo, d).stat().st_size for d in digests)


def existing(server: OcistoreServer, repo: str, digests: list[str]) -> list[str]:
    return [d for d in digests if blob_file(server, repo, d).exists()]


def listed(server: OcistoreServer, repo: str) -> dict[str, str | None]:
    """index.json as digest -> tag (None when untagged)."""
    doc = json.loads((server.root / repo / "index.json").read_text())
    return {d["digest"]: (d.get("annotations") or {}).get(REF_NAME) for d in doc["manifests"]}


def ocistore_gc(server: OcistoreServer, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "ocistore"), "gc", str(server.config_path), *args],
                          capture_output=True, text=True, timeout=60, cwd=server.workdir)
    assert proc.returncode == 0, f"ocistore gc {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def bytes_freed(output: str) -> int:
    """The logical bytes freed in all, from the output of `ocistore gc --json`."""
    freed = json.loads(output)["totals"]["bytes_freed"]
    assert isinstance(freed, int), output
    return freed


def past_gc_delay(server: OcistoreServer) -> None:
    """Everything written so far becomes older than gcDelay: every file of the store is given a
    time that long ago (what an hour of waiting would do, without the wait)."""
    then = time.time() - GC_DELAY - 60
    for path in server.root.rglob("*"):
        os.utime(path, (then, then), follow_symlinks=False)


def delete(client: httpx.Client, repo: str, ref: str) -> None:
    resp = client.delete(f"/v2/{repo}/manifests/{ref}")
    assert resp.status_code == 202, resp.text


def assert_pullable(client: httpx.Client, repo: str, ref: str, image: Image) -> None:
    manifest = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": image.media_type})
    assert manifest.status_code == 200 and manifest.content == image.manifest, manifest.status_code
    for blob in (image.config, *image.layers):
        resp = client.get(f"/v2/{repo}/blobs/{digest_of(blob)}")
        assert resp.status_code == 200 and resp.content == blob, resp.status_code


def make_server(tmp_path: Path, storage: dict[str, Any]) -> OcistoreServer:
    return OcistoreServer(tmp_path, storage=storage).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OcistoreServer]:
    """`ocistore serve` with gcDelay 1s and no Redis: the single-process mode."""
    srv = make_server(tmp_path, {"gc": True, "gcDelay": f"{GC_DELAY:g}s"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: OcistoreServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def test_dry_run_lists_and_keeps_then_gc_removes_the_untagged_manifest_and_its_blobs(
    server: OcistoreServer, client: httpx.Client
) -> None:
    """--dry-run must be harmless; the real run removes exactly that and says how many bytes it freed."""
    repo, other = new_repo(), new_repo()
    kept = push_random_image(client, repo, "keep")
    doomed = push_random_image(client, repo, "v1")
    other_doomed = push_random_image(client, other, "v1")
    delete(client, repo, "v1")
    delete(client, other, "v1")
    server.stop()  # its own GC would collect them gcDelay after the deletion; the command is under test
    past_gc_delay(server)
    expected = size_on_disk(server, repo, image_digests(doomed))

    dry = ocistore_gc(server, "--repo", repo, "--dry-run", "--json")
    for d in image_digests(doomed):
        assert d in dry.stdout, f"--dry-run does not list {d}:\n{dry.stdout}"
    for d in image_digests(kept):
        assert d not in dry.stdout, f"--dry-run would remove the tagged image's {d}:\n{dry.stdout}"
    assert bytes_freed(dry.stdout) == expected, dry.stdout
    assert existing(server, repo, image_digests(doomed)) == image_digests(doomed), "--dry-run removed files"
    assert doomed.digest in listed(server, repo), "--dry-run edited index.json"

    done = ocistore_gc(server, "--repo", repo, "--json")
    for d in image_digests(doomed):
        assert d in done.stdout, f"gc does not print {d}:\n{done.stdout}"
    assert bytes_freed(done.stdout) == expected, done.stdout
    assert existing(server, repo, image_digests(doomed)) == [], done.stdout
    assert listed(server, repo) == {kept.digest: "keep"}
    assert existing(server, repo, image_digests(kept)) == image_digests(kept)
    # --repo confined it to one repository; a run over all then takes the other.
    assert existing(server, other, image_digests(other_doomed)) == image_digests(other_doomed)
    everything = ocistore_gc(server)
    assert existing(server, other, image_digests(other_doomed)) == [], everything.stdout
    assert bytes_freed(ocistore_gc(server, "--json").stdout) == 0, "a second run found more garbage"

    server.start()
    with httpx.Client(base_url=server.url, timeout=60.0) as again:
        assert_pullable(again, repo, "keep", kept)
        assert again.get(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 404
        assert again.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]


def test_gc_while_serving_keeps_tagged_images_and_blobs_younger_than_gc_delay(
    server: OcistoreServer, client: httpx.Client
) -> None:
    """GC is safe online: a young unreferenced blob may be a push in flight, a tagged image is live."""
    repo = new_repo()
    tagged = push_random_image(client, repo, "v1")
    old = os.urandom(1000)
    old_digest = push_blob(client, repo, old)
    past_gc_delay(server)
    young = os.urandom(2000)
    young_digest = push_blob(client, repo, young)

    out = ocistore_gc(server, "--json").stdout
    assert old_digest in out and bytes_freed(out) == len(old), out
    assert not blob_file(server, repo, old_digest).exists()
    assert blob_file(server, repo, young_digest).exists(), "a blob younger than gcDelay was collected"
    assert existing(server, repo, image_digests(tagged)) == image_digests(tagged)
    assert_pullable(client, repo, "v1", tagged)
    assert client.get(f"/v2/{repo}/blobs/{old_digest}").status_code == 404
    assert client.get(f"/v2/{repo}/blobs/{young_digest}").content == young


def set_retention(server: OcistoreServer, **retention: Any) -> None:
    """Give the (stopped) server's config a `storage.retention` block."""
    config = json.loads(server.config_path.read_text())
    config["storage"]["retention"] = retention
    server.config_path.write_text(json.dumps(config))


def push_signed_and_orphaned(client: httpx.Client, repo: str) -> tuple[Image, Image, Image, Image]:
    """A tagged subject with a signature, and a signature whose subject was deleted."""
    subject = push_random_image(client, repo, "app")
    live_sig = push_random_image(client, repo, subject=subject.descriptor(), artifact_type=SIGNATURE,
                                 config_media_type=OCI_EMPTY, layers=1)
    gone = push_random_image(client, repo, "old")
    orphan_sig = push_random_image(client, repo, subject=gone.descriptor(), artifact_type=SIGNATURE,
                                   config_media_type=OCI_EMPTY, layers=1)
    delete(client, repo, gone.digest)
    return subject, live_sig, gone, orphan_sig


def test_referrers_of_a_gone_subject_are_kept_unless_a_policy_deletes_referrers(
    server: OcistoreServer, client: httpx.Client
) -> None:
    """zot's default: a referrer whose subject is gone stays (deleteReferrers is false unless a
    retention policy for the repository sets it); its gone subject's own blobs go."""
    repo = new_repo()
    subject, live_sig, gone, orphan_sig = push_signed_and_orphaned(client, repo)
    server.stop()
    past_gc_delay(server)

    out = ocistore_gc(server).stdout
    survivors = [*image_digests(subject), *image_digests(live_sig), *image_digests(orphan_sig)]
    assert existing(server, repo, survivors) == survivors, out
    assert existing(server, repo, image_digests(gone)[1:]) == [], out
    assert set(listed(server, repo)) == {subject.digest, live_sig.digest, orphan_sig.digest}


def test_referrers_of_a_live_subject_survive_and_those_of_a_gone_subject_are_collected(
    server: OcistoreServer, client: httpx.Client
) -> None:
    """With `deleteReferrers`, a signature is live through its subject; once the subject is gone, so is it."""
    repo = new_repo()
    subject, live_sig, gone, orphan_sig = push_signed_and_orphaned(client, repo)
    server.stop()
    set_retention(server, policies=[{"repositories": ["gc/**"], "deleteReferrers": True}])
    past_gc_delay(server)

    out = ocistore_gc(server).stdout
    survivors = [*image_digests(subject), *image_digests(live_sig)]
    assert existing(server, repo, survivors) == survivors, out
    collected = [*image_digests(gone)[1:], orphan_sig.digest, digest_of(orphan_sig.layers[0])]
    assert existing(server, repo, collected) == [], out
    assert orphan_sig.digest in out, out
    assert set(listed(server, repo)) == {subject.digest, live_sig.digest}

    server.start()
    with httpx.Client(base_url=server.url, timeout=60.0) as again:
        refs = again.get(f"/v2/{repo}/referrers/{subject.digest}").json()["manifests"]
        assert [r["digest"] for r in refs] == [live_sig.digest]
        assert_pullable(again, repo, live_sig.digest, live_sig)


def test_an_index_keeps_its_children_while_tagged(server: OcistoreServer, client: httpx.Client) -> None:
    """Per-platform manifests are untagged; only the index's tag keeps them."""
    repo = new_repo()
    kept_children = [push_random_image(client, repo) for _ in range(2)]
    kept_index = push_index(client, repo, "multi", kept_children)
    gone_children = [push_random_image(client, repo) for _ in range(2)]
    gone_index = push_index(client, repo, "gone", gone_children)
    delete(client, repo, "gone")
    server.stop()
    past_gc_delay(server)

    out = ocistore_gc(server).stdout
    survivors = [digest_of(kept_index), *(d for c in kept_children for d in image_digests(c))]
    assert existing(server, repo, survivors) == survivors, out
    collected = [digest_of(gone_index), *(d for c in gone_children for d in image_digests(c))]
    assert existing(server, repo, collected) == [], out
    assert listed(server, repo) == {digest_of(kept_index): "multi", **{c.digest: None for c in kept_children}}


def test_a_stale_upload_session_is_removed_and_a_fresh_one_kept(tmp_path: Path) -> None:
    """An abandoned upload holds disk forever unless GC removes it; one in progress must go on.

    gcDelay is a minute here and the stale session is made old by its file's time: with the
    suite's 1s, the fresh session would age past it while the two commands start."""
    server = make_server(tmp_path, {"gc": True, "gcDelay": "60s"})
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            _stale_and_fresh_session(server, client)
    finally:
        server.stop()


def _stale_and_fresh_session(server: OcistoreServer, client: httpx.Client) -> None:
    repo = new_repo()
    stale = path_of(open_session(client, repo))
    assert patch_chunk(client, stale, os.urandom(5000), 0).status_code == 202
    fresh = path_of(open_session(client, repo))
    data = os.urandom(3000)
    assert patch_chunk(client, fresh, data, 0).status_code == 202
    stale_id, fresh_id = stale.rsplit("/", 1)[-1], fresh.rsplit("/", 1)[-1]
    uploads = server.root / repo / ".uploads"
    an_hour_ago = time.time() - 3600
    os.utime(uploads / stale_id, (an_hour_ago, an_hour_ago))

    dry = ocistore_gc(server, "--dry-run").stdout
    assert stale_id in dry and (uploads / stale_id).exists(), dry
    out = ocistore_gc(server, "--json").stdout
    assert stale_id in out and fresh_id not in out, out
    assert bytes_freed(out) == 5000, out
    assert not (uploads / stale_id).exists()
    assert (uploads / fresh_id).exists()
    assert client.get(stale).status_code == 404
    done = client.put(httpx.URL(fresh).copy_merge_params({"digest": digest_of(data)}),
                      headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data


def test_gc_false_collects_nothing(tmp_path: Path) -> None:
    """`gc: false` is an operator's promise that nothing is deleted behind their back."""
    server = make_server(tmp_path, {"gc": False, "gcDelay": "1s"})
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            repo = new_repo()
            untagged = push_random_image(client, repo, "v1")
            delete(client, repo, "v1")
            orphan = push_blob(client, repo, os.urandom(500))
            session = path_of(open_session(client, repo))
            assert patch_chunk(client, session, os.urandom(700), 0).status_code == 202
            past_gc_delay(server)
            for args in (["--dry-run"], []):
                out = ocistore_gc(server, *args).stdout
                assert "off" in out, out
                for d in image_digests(untagged):
                    assert d not in out, out
            time.sleep(1.0)  # the server's own GC, had it been scheduled, would have run by now
            everything = [*image_digests(untagged), orphan]
            assert existing(server, repo, everything) == everything
            assert (server.root / repo / ".uploads" / session.rsplit("/", 1)[-1]).exists()
            assert untagged.digest in listed(server, repo)
    finally:
        server.stop()


def test_serve_collects_a_deleted_manifests_blobs_by_itself(tmp_path: Path) -> None:
    """On one machine with no Redis, `ocistore serve` runs the gc actor in-process, after gcDelay."""
    delay = 2.0
    server = make_server(tmp_path, {"gc": True, "gcDelay": f"{delay:g}s"})
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            repo = new_repo()
            kept = push_random_image(client, repo, "keep")
            doomed = push_random_image(client, repo, "doomed")
            blobs = image_digests(doomed)[1:]
            delete(client, repo, doomed.digest)
            deleted_at = time.time()
            assert existing(server, repo, blobs) == blobs, "collected at once, before gcDelay"

            deadline = time.monotonic() + delay + 8.0
            while existing(server, repo, blobs) and time.monotonic() < deadline:
                time.sleep(0.05)
            gone_at = time.time()
            tail = "\n".join(server.log().splitlines()[-30:])
            assert existing(server, repo, blobs) == [], f"not collected within {delay + 8}s; log:\n{tail}"
            assert gone_at - deleted_at >= delay - 0.5, f"collected {gone_at - deleted_at:.2f}s after the delete"
            assert existing(server, repo, image_digests(kept)) == image_digests(kept)
            assert_pullable(client, repo, "keep", kept)
    finally:
        server.stop()


def test_an_emptied_repository_goes_but_a_repository_nested_in_it_stays(
    server: OcistoreServer, client: httpx.Client
) -> None:
    """A repository left with nothing leaves the catalog; its directory may still hold another."""
    parent = new_repo()
    image = push_random_image(client, parent, "v1")
    nested = push_random_image(client, f"{parent}/sub", "v1")
    assert client.delete(f"/v2/{parent}/manifests/{image.digest}").status_code == 202
    past_gc_delay(server)
    ocistore_gc(server)
    assert client.get(f"/v2/{parent}/tags/list").status_code == 404
    assert parent not in client.get("/v2/_catalog").json()["repositories"]
    assert sorted(p.name for p in (server.root / parent).iterdir()) == ["sub"]
    assert_pullable(client, f"{parent}/sub", "v1", nested)


def test_an_upload_that_never_became_a_manifest_leaves_no_repository(
    server: OcistoreServer, client: httpx.Client
) -> None:
    repo = new_repo()
    open_session(client, repo)
    push_blob(client, repo, os.urandom(100))
    assert repo not in client.get("/v2/_catalog").json()["repositories"]
    assert client.get(f"/v2/{repo}/tags/list").status_code == 404
    past_gc_delay(server)
    out = ocistore_gc(server).stdout
    assert repo in out, out
    assert not (server.root / repo).exists()


def test_a_blob_pushed_again_counts_as_new_for_gc(server: OcistoreServer, client: httpx.Client) -> None:
    """A re-push answers 201: the blob must survive until the manifest that needs it arrives."""
    repo = new_repo()
    layer = os.urandom(4096)
    digest = push_blob(client, repo, layer)
    push_random_image(client, repo, "keep")
    past_gc_delay(server)
    push_blob(client, repo, layer)  # the client's next push starts with this layer again
    ocistore_gc(server)
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == layer
