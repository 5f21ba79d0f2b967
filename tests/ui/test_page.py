"""The operators' web page, in chromium (JavaScript off), against a real server.

The store (`site`) holds: `team/web` (an index over two platforms tagged v1 with a signature
referring to it, an image v2 with an SBOM), `team/api` (v2's blobs again, deduplicated, and an
image of its own), `team/old` (a deleted image, part of it aged past gcDelay, part not) and
`secret/x`. The figures on the page are compared with `ocistore du --json` and GC dry runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ocistore.config import load_config
from ocistore.gc import collect_repository
from ocistore.gc_report import GCReport
from ocistore.registry import Registry
from ocistore.registry.catalog import list_layouts
from tests.api.helpers import (
    OCI_EMPTY,
    OCI_INDEX,
    Image,
    build_image,
    delete_manifest,
    digest_of,
    push_blob,
    push_index,
    push_manifest,
    push_random_image,
    tag_all,
)
from tests.servers import OcistoreServer, blob_file, wait_until
from tests.ui.conftest import ADMIN, READER, Browse, api, du, guarded_server, ocistore, run_async, snap

SIGNATURE = "application/vnd.example.sig"
SBOM = "application/spdx+json"
HOURS_AGO = 2 * 3600


@dataclass
class Site:
    server: OcistoreServer
    index: bytes
    v2: Image
    solo: Image
    old: Image

    @property
    def url(self) -> str:
        return self.server.url


def _referrer(client: httpx.Client, repo: str, artifact_type: str, subject: dict[str, object]) -> Image:
    image = build_image(client, repo, layers=1, config_media_type=OCI_EMPTY, artifact_type=artifact_type,
                        subject=subject)
    push_manifest(client, repo, image.digest, image.manifest, image.media_type)
    return image


def _age(server: OcistoreServer, repo: str, digests: list[str]) -> None:
    then = time.time() - HOURS_AGO
    for digest in digests:
        os.utime(blob_file(server.root, repo, digest), (then, then))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = guarded_server(tmp_path_factory.mktemp("ui-site")).start()
    try:
        with api(server) as c:
            amd, arm = push_random_image(c, "team/web"), push_random_image(c, "team/web")
            index = push_index(c, "team/web", "v1", [amd, arm])
            v2 = push_random_image(c, "team/web", "v2")
            _referrer(c, "team/web", SIGNATURE, {"mediaType": OCI_INDEX, "digest": digest_of(index),
                                                 "size": len(index)})
            _referrer(c, "team/web", SBOM, v2.descriptor())
            for blob in (v2.config, *v2.layers):  # the same bytes again: links, so dedupe saves them
                push_blob(c, "team/api", blob)
            push_manifest(c, "team/api", "latest", v2.manifest, v2.media_type)
            solo = push_random_image(c, "team/api", "solo")
            push_random_image(c, "secret/x", "v1")
            old = push_random_image(c, "team/old", "gone", layers=3)
            push_random_image(c, "team/old", "keep")
            delete_manifest(c, "team/old", old.digest)
        # The config and one layer of the deleted image are past gcDelay; the other layers are not.
        _age(server, "team/old", [digest_of(old.config), digest_of(old.layers[0])])
        yield Site(server, index, v2, solo, old)
    finally:
        server.stop()


def number(text: str) -> int:
    """The exact byte count a figure starts with ("12,345 B (12.1 KiB)")."""
    match = re.match(r"\s*(-?[\d,]+) B", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


def dry_runs(server: OcistoreServer, repo: str | None = None) -> list[GCReport]:
    """GC dry runs of every layout (or one), in this process, over the server's store."""
    async def run() -> list[GCReport]:
        registry = Registry.from_config(load_config(server.config_path))
        try:
            store = registry.default
            names = [repo] if repo else await list_layouts(store)
            return [await collect_repository(store, name, dry_run=True) for name in names]
        finally:
            await registry.close()

    return run_async(run())


def would_remove(output: str) -> int:
    """The logical bytes of `ocistore gc --dry-run --json`'s totals."""
    return int(json.loads(output)["totals"]["bytes_freed"])


# -- who sees what --------------------------------------------------------------------------


def test_the_reader_sees_only_her_repository_and_no_admin_view(site: Site, browse: Browse, shots: Path) -> None:
    reader = browse(site.url, READER).new_page()
    response = reader.goto("/")
    assert response is not None and response.status == 200
    assert reader.url == f"{site.url}/ui/"
    assert reader.locator("#repositories a.repo").all_inner_texts() == ["team/web"]
    assert reader.locator("#who").inner_text() == READER
    assert reader.locator("#nav-storage").count() == 0 and reader.locator("#nav-maintenance").count() == 0
    snap(reader, shots, "reader-repositories")
    for path in ("/ui/storage", "/ui/maintenance", "/ui/repo/team/web/-/storage", "/ui/repo/team/api",
                 "/ui/repo/secret/x", "/ui/repo/team/web/-/delete?ref=v2"):
        refused = reader.goto(path)
        assert refused is not None and refused.status == 403, path
    snap(reader, shots, "reader-refused")
    reader.goto("/ui/repo/team/web")
    assert [t.strip() for t in reader.locator("#tags td.tag").all_inner_texts()] == ["v1", "v2"]
    assert reader.locator("a.delete").count() == 0 and reader.locator("#repo-storage").count() == 0
    posted = reader.request.post(f"{site.url}/ui/repo/team/web/-/delete", form={"ref": "v2", "token": "0.0"})
    assert posted.status == 403
    with api(site.server) as c:
        assert c.get("/v2/team/web/manifests/v2").status_code == 200

    admin = browse(site.url, ADMIN).new_page()
    admin.goto("/")
    assert admin.locator("#repositories a.repo").all_inner_texts() == ["secret/x", "team/api", "team/old",
                                                                      "team/web"]
    assert admin.locator("#nav-storage").count() == 1 and admin.locator("#nav-maintenance").count() == 1
    snap(admin, shots, "admin-repositories")


def test_anonymous_is_asked_to_log_in(site: Site) -> None:
    for path in ("/ui/", "/ui/storage", "/ui/repo/team/web"):
        resp = httpx.get(f"{site.url}{path}")
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic ")
        assert "team/web" not in resp.text


# -- a repository -------------------------------------------------------------------------


def test_a_repository_shows_tags_media_types_platforms_referrers_and_times(site: Site, browse: Browse,
                                                                          shots: Path) -> None:
    page = browse(site.url, ADMIN).new_page()
    page.goto("/ui/repo/team/web")
    v1, v2 = page.locator("#tags tr[data-tag='v1']"), page.locator("#tags tr[data-tag='v2']")
    assert OCI_INDEX in v1.locator("td.mt").inner_text()
    assert v1.locator(".platform").all_inner_texts() == ["linux/amd64", "linux/arm64"]
    assert SIGNATURE in v1.locator(".referrer").inner_text()
    assert SBOM in v2.locator(".referrer").inner_text()
    assert v2.locator("code.digest").get_attribute("title") == site.v2.digest
    # The two platform images and the two referrers are listed untagged.
    untagged = page.locator("#manifests tr:has(td.untagged)")
    assert untagged.count() == 4
    assert page.locator(f"#manifests tr[data-digest='{digest_of(site.index)}'] .referrer").count() == 1

    # Push times reach the record within 5 s; a pull (a manifest GET) likewise. Nothing pulled v1 yet.
    def shown(cell: int) -> bool:
        page.reload()
        return page.locator("#tags tr[data-tag='v1'] td.time").nth(cell).inner_text() != "—"

    assert wait_until(lambda: shown(0), timeout=30, interval=0.5), "the push time never showed"
    assert page.locator("#tags tr[data-tag='v1'] td.time").nth(1).inner_text() == "—"
    with api(site.server) as c:
        assert c.get("/v2/team/web/manifests/v1", headers={"Accept": OCI_INDEX}).status_code == 200
    assert wait_until(lambda: shown(1), timeout=30, interval=0.5), "the pull time never showed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        page.locator("#tags tr[data-tag='v1'] td.time").nth(1).inner_text())
    snap(page, shots, "repository")


# -- storage: the figures of `ocistore du` and of a GC dry run ------------------------------


def test_storage_figures_are_those_of_du_and_of_a_gc_dry_run(site: Site, browse: Browse, shots: Path) -> None:
    page = browse(site.url, ADMIN).new_page()
    page.goto("/ui/")
    page.click("#nav-storage")
    assert page.url.endswith("/ui/storage")
    snap(page, shots, "storage")
    usage = du(site.server)["stores"]["/"]
    store = page.locator("section[data-store='/']")
    total = store.locator(".usage tr.total")
    assert number(total.locator("td.logical").inner_text()) == usage["logical_bytes"]
    assert number(total.locator("td.physical").inner_text()) == usage["physical_bytes"]
    assert number(total.locator("td.saved").inner_text()) == usage["saved_bytes"] > 0
    for name, figures in usage["repositories"].items():
        row = store.locator(f".repositories tr[data-repo='{name}']")
        assert number(row.locator("td.logical").inner_text()) == figures["logical_bytes"], name
        assert number(row.locator("td.physical").inner_text()) == figures["physical_bytes"], name
    # GC now: the CLI's dry run reclaims the same bytes; physical and held back are GC's own figures.
    reports = dry_runs(site.server)
    dry = ocistore(site.server, "gc", "--dry-run", "--json")
    assert number(store.locator(".gc-bytes").inner_text()) == would_remove(dry)
    assert number(store.locator(".gc-physical").inner_text()) == sum(r.physical_bytes_freed for r in reports) > 0
    assert number(store.locator(".gc-held").inner_text()) == sum(r.held_back_bytes for r in reports) > 0

    # One repository's own view: the same, for it alone.
    page.goto("/ui/repo/team/old")
    page.click("#repo-storage")
    snap(page, shots, "repository-storage")
    mine = du(site.server, "--repo", "team/old")["stores"]["/"]["repositories"]["team/old"]
    assert number(page.locator("#usage td.logical").inner_text()) == mine["logical_bytes"]
    assert number(page.locator("#usage td.physical").inner_text()) == mine["physical_bytes"]
    assert number(page.locator("#usage td.saved").inner_text()) == mine["saved_bytes"]
    (report,) = dry_runs(site.server, "team/old")
    cli = would_remove(ocistore(site.server, "gc", "--dry-run", "--json", "--repo", "team/old"))
    assert number(page.locator("#gc-bytes").inner_text()) == cli == report.bytes_freed
    assert number(page.locator("#gc-physical").inner_text()) == report.physical_bytes_freed
    assert number(page.locator("#gc-held").inner_text()) == report.held_back_bytes
    old = site.old
    assert report.blobs == sorted([digest_of(old.config), digest_of(old.layers[0])])
    assert report.held_back_bytes == len(old.layers[1]) + len(old.layers[2])


# -- maintenance: GC history, scrub findings, queues --------------------------------------


def test_maintenance_shows_gc_history_scrub_findings_and_queues(site: Site, browse: Browse, shots: Path) -> None:
    (predicted,) = dry_runs(site.server, "team/old")
    assert predicted.physical_bytes_freed > 0
    removed = json.loads(ocistore(site.server, "gc", "--repo", "team/old", "--json"))
    assert removed["totals"]["bytes_freed"] == predicted.bytes_freed
    # A layer only team/api holds, damaged in place (same size, other bytes); then a real scrub.
    layer = digest_of(site.solo.layers[0])
    path = blob_file(site.server.root, "team/api", layer)
    path.write_bytes(os.urandom(path.stat().st_size))
    ocistore(site.server, "scrub", "--repo", "team/api", status=1)  # damage found: exit 1

    page = browse(site.url, ADMIN).new_page()
    page.goto("/ui/")
    page.click("#nav-maintenance")
    snap(page, shots, "maintenance")
    store = page.locator("section[data-store='/']")
    row = store.locator(".gc-history tr[data-repo='team/old']")
    assert row.count() == 1
    assert number(row.locator("td.freed").inner_text()) == predicted.physical_bytes_freed
    cells = row.locator("td").all_inner_texts()
    assert cells[3] == str(len(predicted.blobs))
    finding = store.locator(f".findings tr[data-repo='team/api'][data-digest='{layer}']")
    assert finding.count() == 1 and finding.locator("td.problem").inner_text()
    assert page.locator("#single-process").count() == 1
    queues = [r.get_attribute("data-queue") for r in page.locator("#queues tr[data-queue]").all()]
    assert sorted(q or "" for q in queues) == ["dedupe", "gc", "scrub"]


# -- delete, confirmed, and only so ---------------------------------------------------------


def test_a_delete_confirmed_on_the_page_deletes_and_nothing_else_can(site: Site, browse: Browse,
                                                                    shots: Path) -> None:
    with api(site.server) as c:
        first = push_random_image(c, "team/del", "v1")
        second = push_random_image(c, "team/del", "v2")
        tag_all(c, "team/del", second, ["v3"])
        third = push_random_image(c, "team/del", "v4")
    admin = browse(site.url, ADMIN).new_page()
    admin.goto("/ui/repo/team/del")
    admin.click("#tags tr[data-tag='v1'] a.delete")
    snap(admin, shots, "confirm-delete-tag")
    admin.click("#confirm-delete")
    assert admin.locator("#deleted").inner_text() == "Deleted v1."
    snap(admin, shots, "deleted")
    with api(site.server) as c:
        assert c.get("/v2/team/del/manifests/v1").status_code == 404
        assert c.get(f"/v2/team/del/manifests/{first.digest}").status_code == 200  # untagged, not gone

    admin.click(f"#manifests tr[data-digest='{second.digest}'] a.delete")
    assert [t.strip() for t in admin.locator("#confirm .tag, b.tag").all_inner_texts()] == ["v2", "v3"]
    admin.click("#confirm-delete")
    with api(site.server) as c:
        for ref in (second.digest, "v2", "v3"):
            assert c.get(f"/v2/team/del/manifests/{ref}").status_code == 404, ref

    # Without the confirmation's token, with another reference's token, from another site's form,
    # or by the reader with the admin's token: refused, and v4 stays.
    action = f"{site.url}/ui/repo/team/del/-/delete"
    assert admin.request.post(action, form={"ref": "v4"}).status == 403
    admin.goto(f"/ui/repo/team/del/-/delete?ref={first.digest}")
    token = admin.locator("#confirm input[name='token']").get_attribute("value") or ""
    assert admin.request.post(action, form={"ref": "v4", "token": token}).status == 403
    admin.goto("data:text/html,<form method=post action='" + action + "'><input name=ref value=v4>"
               "<input name=token value='" + token + "'><button id=go>go</button></form>")
    with admin.expect_navigation():
        admin.click("#go")
    assert admin.locator("#message").inner_text().startswith("This delete did not come from")
    snap(admin, shots, "cross-site-refused")
    reader = browse(site.url, READER).new_page()
    assert reader.request.post(action, form={"ref": first.digest, "token": token}).status == 403
    with api(site.server) as c:
        assert c.get("/v2/team/del/manifests/v4").status_code == 200
        assert c.get(f"/v2/team/del/manifests/{first.digest}").status_code == 200
    # The token is good for what it was issued: the admin's own confirmation goes through.
    admin.goto(f"/ui/repo/team/del/-/delete?ref={first.digest}")
    admin.click("#confirm-delete")
    with api(site.server) as c:
        assert c.get(f"/v2/team/del/manifests/{first.digest}").status_code == 404
        assert c.get(f"/v2/team/del/manifests/{third.digest}").status_code == 200


def test_what_a_client_controls_is_escaped(site: Site, browse: Browse) -> None:
    page = browse(site.url, ADMIN).new_page()
    evil = "<img id=evil src=x>"
    page.goto(f"/ui/repo/team/web?deleted={evil}")
    assert page.locator("#deleted").inner_text() == f"Deleted {evil}."
    assert page.locator("#evil").count() == 0
    page.goto(f"/ui/?last=~{evil}")  # "~" sorts after every name: an empty page that shows `last` in its links
    assert page.locator("#evil").count() == 0
    assert page.locator("#empty").inner_text() == "No more repositories."


# -- 10,000 repositories ------------------------------------------------------------------


def test_ten_thousand_repositories_page_quickly(tmp_path: Path, browse: Browse, shots: Path) -> None:
    # GC off: its first sweep would otherwise collect 10,000 repositories beside the timed views.
    server = guarded_server(tmp_path / "big", storage={"gc": False})
    names = sorted(f"org{i % 10}/app{i:05d}" for i in range(10_000))
    for name in names:
        (server.root / name).mkdir(parents=True)
        (server.root / name / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (server.root / name / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    server.start()
    try:
        page = browse(server.url, ADMIN).new_page()
        page.goto("/ui/")  # the login and the first connection, out of the timing
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            page.goto("/ui/")
            seconds.append(time.perf_counter() - started)
        assert page.locator("#repositories a.repo").all_inner_texts() == names[:50]
        started = time.perf_counter()
        page.click("#next")
        seconds.append(time.perf_counter() - started)
        assert page.locator("#repositories a.repo").all_inner_texts() == names[50:100]
        snap(page, shots, "ten-thousand")
        with api(server) as c:
            started = time.perf_counter()
            assert c.get("/v2/_catalog", params={"n": 50}).status_code == 200
            catalog = time.perf_counter() - started
        # A reader who may read none of them: the walk goes through all 10,000 to fill her page.
        reader = browse(server.url, READER).new_page()
        reader.goto("/ui/")
        started = time.perf_counter()
        reader.goto("/ui/")
        unreadable = time.perf_counter() - started
        assert reader.locator("#empty").count() == 1
        print(f"10,000 repositories: pages of the web page {', '.join(f'{s:.3f}' for s in seconds)} s; "
              f"the API's _catalog?n=50 (a walk of the store) {catalog:.3f} s; "
              f"a reader who may read none {unreadable:.3f} s")
        assert max(seconds) < 1.0, seconds
    finally:
        server.stop()
