"""Scrub over a real local store, damaged on disk the way disks and operators damage it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ocistore.blobstore.paths import blob_path
from ocistore.config import StorageConfig
from ocistore.digests import Digest, digest_of
from ocistore.layout import index_path
from ocistore.locks import LocalLocks
from ocistore.mediatypes import OCI_INDEX, OCI_MANIFEST
from ocistore.metrics import exposition
from ocistore.registry.index import Descriptor, Draft
from ocistore.registry.manifests import put_manifest
from ocistore.registry.store import Store
from ocistore.registry.uploads import monolithic
from ocistore.scraped import scrub_families
from ocistore.scrub import scrub_repository, scrub_store
from ocistore.scrub_report import REPORT_PATH, Finding, ScrubReport, load_report, report_rows
from ocistore.storage.local import LocalDriver

T = TypeVar("T")
REPO = "library/app"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_store(root: Path) -> Store:
    return Store(LocalDriver(str(root)), StorageConfig(root_directory=str(root)), LocalLocks())


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(store: Store, repo: str, data: bytes) -> Descriptor:
    digest = digest_of(data)
    await monolithic(store, repo, digest, _once(data))
    return {"mediaType": "application/octet-stream", "digest": str(digest), "size": len(data)}


async def push_manifest(store: Store, repo: str, reference: str, doc: dict[str, Any]) -> Descriptor:
    body = json.dumps(doc).encode()
    manifest, _, _ = await put_manifest(store, repo, reference, body, doc["mediaType"])
    return {"mediaType": doc["mediaType"], "digest": str(manifest.digest), "size": manifest.size}


async def push_image(store: Store, repo: str, tag: str, layers: list[bytes]) -> tuple[Descriptor, list[Descriptor]]:
    """An image of `layers`; returns its manifest's descriptor and its layers' descriptors."""
    config = await push_blob(store, repo, json.dumps({"tag": tag}).encode())
    layer_descs = [await push_blob(store, repo, data) for data in layers]
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layer_descs}
    return await push_manifest(store, repo, tag, doc), layer_descs


def blob_file(root: Path, repo: str, digest: str) -> Path:
    return root / blob_path(repo, Digest.parse(digest))


def problems(report: ScrubReport) -> set[tuple[str, str, str]]:
    return set(report.findings)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def image(root: Path) -> tuple[Descriptor, list[Descriptor]]:
    """`library/app:v1`, with two layers."""
    return run(push_image(make_store(root), REPO, "v1", [os.urandom(5000), os.urandom(70000)]))


def test_clean_store_has_no_findings(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    run(push_image(make_store(root), "other", "latest", [b"layer"]))
    hashed: list[int] = []
    report = run(scrub_store(make_store(root), progress=hashed.append))
    assert report.findings == {}
    assert report.passes == 1
    assert report.blobs_checked == 7  # per repository: config, layers, manifest
    assert report.bytes_hashed == sum(hashed) > 75000
    assert report.last_pass_seconds is not None and report.last_pass_seconds >= 0


def test_flipped_bytes_are_a_digest_mismatch(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    layer = image[1][1]["digest"]
    path = blob_file(root, REPO, layer)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    report = run(scrub_store(make_store(root)))
    assert problems(report) == {(REPO, layer, "digest_mismatch")}
    assert "hash to sha256:" in report.findings[(REPO, layer, "digest_mismatch")].detail


def test_deleted_layer_is_a_missing_blob(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    manifest, layers = image
    blob_file(root, REPO, layers[0]["digest"]).unlink()
    report = run(scrub_store(make_store(root)))
    assert problems(report) == {(REPO, layers[0]["digest"], "missing_blob")}
    assert manifest["digest"] in report.findings[(REPO, layers[0]["digest"], "missing_blob")].detail


def test_truncated_layer_is_a_size_and_digest_mismatch(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    layer = image[1][1]["digest"]
    path = blob_file(root, REPO, layer)
    path.write_bytes(path.read_bytes()[:4096])
    report = run(scrub_store(make_store(root)))
    assert problems(report) == {(REPO, layer, "size_mismatch"), (REPO, layer, "digest_mismatch")}
    assert "70000 bytes, the blob has 4096" in report.findings[(REPO, layer, "size_mismatch")].detail


def test_repair_resolves_and_first_seen_persists_meanwhile(root: Path,
                                                           image: tuple[Descriptor, list[Descriptor]]) -> None:
    layer = image[1][0]["digest"]
    path = blob_file(root, REPO, layer)
    good = path.read_bytes()
    path.write_bytes(b"rot" + good[3:])
    key = (REPO, layer, "digest_mismatch")
    first = run(scrub_store(make_store(root))).findings[key]
    time.sleep(0.01)
    second = run(scrub_store(make_store(root))).findings[key]
    assert second.first_seen == first.first_seen
    assert second.last_checked > first.last_checked
    path.write_bytes(good)
    report = run(scrub_store(make_store(root)))
    assert report.findings == {}
    assert report.passes == 3
    assert report.problems_found == 1


def test_report_survives_reload(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    blob_file(root, REPO, image[1][0]["digest"]).unlink()
    scrubbed = run(scrub_store(make_store(root)))
    assert (root / REPORT_PATH).is_file()
    reloaded = run(load_report(make_store(root)))
    assert reloaded == scrubbed
    assert reloaded.findings


def test_unreadable_report_starts_over(root: Path, image: tuple[Descriptor, list[Descriptor]],
                                       caplog: pytest.LogCaptureFixture) -> None:
    (root / REPORT_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / REPORT_PATH).write_text("{not json")
    assert run(load_report(make_store(root))) == ScrubReport()
    assert "unreadable" in caplog.text
    assert run(scrub_store(make_store(root))).passes == 1


def test_corrupt_index_and_unreadable_manifest(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    manifest = image[0]["digest"]
    blob_file(root, REPO, manifest).write_bytes(b"{}")
    report = run(scrub_store(make_store(root)))
    assert {(REPO, manifest, "unreadable_manifest"), (REPO, manifest, "size_mismatch"),
            (REPO, manifest, "digest_mismatch")} == problems(report)
    (root / index_path(REPO)).write_text("[]")
    report = run(scrub_store(make_store(root)))
    assert {(REPO, "", "corrupt_index"), (REPO, manifest, "digest_mismatch")} == problems(report)


def test_children_of_a_listed_index_are_checked(root: Path) -> None:
    """A layout made elsewhere may list only the index; its children are still checked."""
    store = make_store(root)

    async def scenario() -> tuple[Descriptor, Descriptor]:
        child, layers = await push_image(store, REPO, "amd64", [b"amd64 layer"])
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}
        top = await push_manifest(store, REPO, "v1", doc)

        async def list_only_the_index(draft: Draft) -> None:
            draft.remove(lambda d: d["digest"] != top["digest"])

        await store.index.update(REPO, list_only_the_index)
        return child, layers[0]

    child, layer = run(scenario())
    blob_file(root, REPO, layer["digest"]).unlink()
    report = run(scrub_store(make_store(root)))
    assert problems(report) == {(REPO, layer["digest"], "missing_blob")}
    assert child["digest"] in report.findings[(REPO, layer["digest"], "missing_blob")].detail


def test_foreign_layers_are_not_expected_locally(root: Path) -> None:
    store = make_store(root)

    async def scenario() -> None:
        config = await push_blob(store, REPO, b"{}")
        foreign = {**await push_blob(store, "elsewhere", b"foreign"), "urls": ["https://example.com/layer"]}
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [foreign]}
        await push_manifest(store, REPO, "v1", doc)

    run(scenario())
    assert run(scrub_store(make_store(root), repo=REPO)).findings == {}


def test_gc_in_flight_is_not_reported(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    """A deletion half done under the repository's lock is never a finding."""
    manifest, layers = image
    store = make_store(root)

    async def scenario() -> ScrubReport:
        deleted, release = asyncio.Event(), asyncio.Event()

        async def collect(draft: Draft) -> None:
            blob_file(root, REPO, layers[0]["digest"]).unlink()
            deleted.set()
            await release.wait()
            draft.remove(lambda d: d["digest"] == manifest["digest"])

        gc = asyncio.create_task(store.index.update(REPO, collect))
        await deleted.wait()
        report = ScrubReport()
        scrub = asyncio.create_task(scrub_repository(store, REPO, report))
        await asyncio.sleep(0.2)  # lets the scrub see the half-done state and wait for the lock
        release.set()
        await gc
        await scrub
        return report

    assert run(scenario()).findings == {}


def test_new_problems_are_logged_once(root: Path, image: tuple[Descriptor, list[Descriptor]],
                                      caplog: pytest.LogCaptureFixture) -> None:
    layer = image[1][0]["digest"]
    blob_file(root, REPO, layer).unlink()
    with caplog.at_level(logging.WARNING, logger="ocistore.scrub"):
        run(scrub_store(make_store(root)))
        run(scrub_store(make_store(root)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "missing_blob" in warnings[0] and layer in warnings[0]


def test_findings_of_a_vanished_repository_are_forgotten(root: Path,
                                                         image: tuple[Descriptor, list[Descriptor]]) -> None:
    run(push_image(make_store(root), "doomed", "v1", [b"x"]))
    (root / index_path("doomed")).write_text("garbage")
    assert {f.repo for f in run(scrub_store(make_store(root))).findings.values()} == {"doomed"}
    (root / index_path("doomed")).unlink()
    assert run(scrub_store(make_store(root))).findings == {}


class Killed(Exception):
    pass


def test_killed_pass_is_resumed(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    run(push_image(make_store(root), "zzz", "v1", [os.urandom(3000)]))

    def die_after_first_repository(n: int) -> None:
        if (root / REPORT_PATH).exists():  # saved once `library/app` is done
            raise Killed

    with pytest.raises(Killed):
        run(scrub_store(make_store(root), progress=die_after_first_repository))
    killed = run(load_report(make_store(root)))
    assert (killed.passes, killed.pass_cursor, killed.blobs_checked) == (0, REPO, 4)
    hashed: list[int] = []
    report = run(scrub_store(make_store(root), progress=hashed.append))
    zzz_bytes = sum(f.stat().st_size for f in (root / "zzz" / "blobs").rglob("*") if f.is_file())
    assert sum(hashed) == zzz_bytes
    assert (report.passes, report.pass_cursor, report.blobs_checked) == (1, None, 7)
    assert report.last_pass_start == killed.pass_start


def test_pacing_caps_throughput(root: Path) -> None:
    store = make_store(root)
    run(push_blob(store, "big", os.urandom(2 << 20)))
    started = time.monotonic()
    report = run(scrub_store(make_store(root), pace_bytes_per_s=4 << 20))
    elapsed = time.monotonic() - started
    assert report.bytes_hashed == 2 << 20
    assert elapsed >= 0.4


def test_pace_must_be_positive(root: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        run(scrub_repository(make_store(root), REPO, ScrubReport(), pace_bytes_per_s=0))


def test_rows_and_metrics(root: Path, image: tuple[Descriptor, list[Descriptor]]) -> None:
    layer = image[1][0]["digest"]
    blob_file(root, REPO, layer).unlink()
    report = run(scrub_store(make_store(root)))
    [row] = report_rows(report)
    assert row["repository"] == REPO and row["digest"] == layer and row["problem"] == "missing_blob"
    assert datetime.fromisoformat(row["first_seen"]).utcoffset() is not None
    text = exposition(scrub_families({"/": report, "/other": ScrubReport()})).decode()
    assert 'ocistore_scrub_passes_total{store="/"} 1.0\n' in text
    assert 'ocistore_scrub_passes_total{store="/other"} 0.0\n' in text
    assert 'ocistore_scrub_blobs_checked_total{store="/"} 3.0\n' in text
    assert f'ocistore_scrub_bytes_hashed_total{{store="/"}} {float(report.bytes_hashed)}\n' in text
    assert 'ocistore_scrub_problems{problem="missing_blob",store="/"} 1.0\n' in text
    assert 'ocistore_scrub_problems{problem="digest_mismatch",store="/"} 0.0\n' in text
    assert 'ocistore_scrub_last_pass_seconds{store="/"} ' in text
    assert "# TYPE ocistore_scrub_passes_total counter" in text


def test_finding_round_trips() -> None:
    finding = Finding("r", "sha256:" + "0" * 64, "missing_blob", "gone", 1.5, 2.5)
    report = ScrubReport(findings={finding.key: finding}, passes=2, pass_cursor="r", pass_start=1.0)
    assert ScrubReport.from_json(json.loads(json.dumps(report.to_json()))) == report
