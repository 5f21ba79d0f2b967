"""The workloads, each run identically against every registry under test.

A workload prepares its data untimed (random bodies, digests, manifests, the tags or repositories it
lists), then times only the requests it measures through `Meter.span`, which also charges the
server (and on S3 the storage service) the CPU it burnt over exactly that interval. Every workload
uses fresh content per server and repeat so no registry is helped by having seen a blob before.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from wire import OCI_MANIFEST, STREAM_PIECE, Blob, Registry, WireError, sha256_digest

MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    """How much each workload does; `FULL` is the real benchmark, `QUICK` a smoke run, and `S3`,
    `S3_QUICK` the same on S3, smaller because moto (an in-memory S3 in Python) is slow.

    FULL takes about 6 minutes on an idle 2-core machine, most of it the peer's 10,000-repository
    catalog (a paged walk of it takes the peer about 40 s: each page walks its whole store), and
    S3 about 10 minutes (the peer's catalog and HEADs dominate); the repeats are what keeps the
    medians steady, so shrink counts before repeats if it ever needs to be faster.
    """

    bulk_bytes: int  # size of each large blob pushed or pulled
    chunk_bytes: int  # PATCH size of the chunked push
    small_count: int  # 4 KiB blob pushes
    manifest_count: int  # manifest PUTs, then as many GETs
    head_count: int  # blob HEADs
    tag_count: int  # tags in the listed repository
    page_size: int  # n= of the paged tag walk
    tag_list_count: int  # whole-list reads
    tag_walk_count: int  # paged walks, each to the last page
    repo_count: int  # repositories in the catalog
    catalog_count: int  # catalog walks (n=1000), and as many paged ones (n=100)
    bulk_repeats: int
    small_repeats: int
    concurrency: int = 16
    small_size: int = 4096
    head_blobs: int = 100  # distinct blobs the HEADs cycle over
    large_repo_count: int = 0  # repositories of the large catalog (0: not measured)
    large_catalog_count: int = 0  # walks of it, whole (n=1000) and paged (n=100) each

    def __post_init__(self) -> None:
        """Bulk bodies are streamed in whole 1 MiB pieces and PATCHed in whole chunks."""
        if self.bulk_bytes % self.chunk_bytes or self.chunk_bytes % STREAM_PIECE:
            raise ValueError("bulk_bytes must be a multiple of chunk_bytes, itself a multiple of 1 MiB")

    def describe(self) -> str:
        """The sizes in one line, for the start of a run."""
        return (f"bulk {self.bulk_bytes // MIB} MiB x{self.bulk_repeats} (PATCH {self.chunk_bytes // MIB} MiB); "
                f"x{self.small_repeats} each: {self.small_count} blob pushes, {self.manifest_count} manifest "
                f"PUT+GET, {self.head_count} HEADs, {self.tag_list_count}+{self.tag_walk_count} tag lists of "
                f"{self.tag_count} (n={self.page_size}), {self.catalog_count} catalogs of {self.repo_count}; "
                f"c={self.concurrency}")


FULL = Sizes(bulk_bytes=256 * MIB, chunk_bytes=8 * MIB, small_count=2000, manifest_count=2000,
             head_count=5000, tag_count=1000, page_size=100, tag_list_count=400, tag_walk_count=100,
             repo_count=500, catalog_count=200, bulk_repeats=5, small_repeats=3,
             large_repo_count=10_000, large_catalog_count=1)
QUICK = Sizes(bulk_bytes=32 * MIB, chunk_bytes=8 * MIB, small_count=200, manifest_count=200,
              head_count=500, tag_count=100, page_size=10, tag_list_count=40, tag_walk_count=10,
              repo_count=50, catalog_count=20, bulk_repeats=2, small_repeats=2)
S3 = Sizes(bulk_bytes=64 * MIB, chunk_bytes=8 * MIB, small_count=500, manifest_count=500, head_count=1000,
           tag_count=500, page_size=50, tag_list_count=100, tag_walk_count=20, repo_count=100,
           catalog_count=50, bulk_repeats=5, small_repeats=3)
S3_QUICK = Sizes(bulk_bytes=16 * MIB, chunk_bytes=8 * MIB, small_count=100, manifest_count=100, head_count=300,
                 tag_count=50, page_size=10, tag_list_count=20, tag_walk_count=5, repo_count=20,
                 catalog_count=10, bulk_repeats=2, small_repeats=2)


@dataclass(frozen=True)
class Sample:
    """One timed span: `units` are bytes for bulk figures and operations for the others;
    `storage_cpu` is the storage service's (moto's) CPU over the span, None on the filesystem, and
    `requests` the storage requests the server sent during it, by S3 action (None: not counted)."""

    figure: str
    seconds: float
    units: int
    server_cpu: float
    client_cpu: float
    storage_cpu: float | None
    requests: dict[str, int] | None = None


@dataclass
class Meter:
    """Times spans and reads the server's (and storage service's) CPU seconds around each one."""

    server_cpu: Callable[[], float]
    storage_cpu: Callable[[], float | None]
    storage_requests: Callable[[], dict[str, int] | None] = lambda: None
    samples: list[Sample] = field(default_factory=list)

    @contextmanager
    def span(self, figure: str, units: int) -> Iterator[None]:
        """Record a sample for the body of the `with`; CPU is read outside the timed interval.

        Dirty pages are flushed first so no span pays for write-back of the previous server's data.
        """
        os.sync()
        requests0 = self.storage_requests()
        cpu0, client0, storage0 = self.server_cpu(), time.process_time(), self.storage_cpu()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        cpu1, client1, storage1 = self.server_cpu(), time.process_time(), self.storage_cpu()
        requests1 = self.storage_requests()
        storage = None if storage0 is None or storage1 is None else storage1 - storage0
        requests = None if requests0 is None or requests1 is None else {
            action: n - requests0.get(action, 0) for action, n in requests1.items() if n > requests0.get(action, 0)}
        self.samples.append(Sample(figure, seconds, units, cpu1 - cpu0, client1 - client0, storage, requests))


@dataclass
class Target:
    """A registry under test as the workloads see it; `big_blob` is the pull workload's subject."""

    name: str
    registry: Registry
    meter: Meter
    big_blob: Blob | None = None


@dataclass(frozen=True)
class Workload:
    """A named step of the benchmark; bulk ones repeat `bulk_repeats` times, others `small_repeats`."""

    name: str
    run: Callable[[Target, Sizes, int], Awaitable[None]]
    bulk: bool


@dataclass(frozen=True)
class PatternBlob:
    """A large blob made of one random 1 MiB piece repeated, so it streams without being held."""

    piece: bytes
    blob: Blob

    @classmethod
    def random(cls, size: int) -> PatternBlob:
        """A fresh pattern of `size` bytes (a multiple of 1 MiB), hashed once up front."""
        piece = os.urandom(STREAM_PIECE)
        hasher = hashlib.sha256()
        for _ in range(size // STREAM_PIECE):
            hasher.update(piece)
        return cls(piece, Blob(f"sha256:{hasher.hexdigest()}", size))

    def pieces(self) -> Iterator[bytes]:
        """The body, 1 MiB at a time."""
        return itertools.repeat(self.piece, self.blob.size // STREAM_PIECE)


async def in_parallel(count: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> None:
    """Run `op(0..count-1)` on `concurrency` workers sharing one index stream; first error wins."""
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            await op(index)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, count)):
            group.create_task(worker())


def random_blobs(count: int, size: int) -> list[tuple[Blob, bytes]]:
    """`count` distinct random blobs with their digests."""
    bodies = [os.urandom(size) for _ in range(count)]
    return [(Blob(sha256_digest(body), size), body) for body in bodies]


def image_manifest(config: Blob, layers: list[Blob], serial: str) -> bytes:
    """A small OCI image manifest, made distinct by a `serial` annotation."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer) for layer in layers],
        "annotations": {"org.example.bench.serial": serial},
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: Blob) -> dict[str, object]:
    """An OCI descriptor of `blob`."""
    return {"mediaType": media_type, "digest": blob.digest, "size": blob.size}


async def push_image_parts(reg: Registry, repo: str, layer_count: int) -> tuple[Blob, list[Blob]]:
    """Push a config blob and `layer_count` small layers for manifests to reference."""
    config_body = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()})
    config = Blob(sha256_digest(config_body.encode()), len(config_body))
    await reg.push_blob(repo, config, config_body.encode())
    layers = random_blobs(layer_count, 4096)
    for blob, body in layers:
        await reg.push_blob(repo, blob, body)
    return config, [blob for blob, _ in layers]


async def blob_push_monolithic(t: Target, sizes: Sizes, rep: int) -> None:
    """POST a session, then PUT the whole large body with its digest, streamed in 1 MiB pieces."""
    big = PatternBlob.random(sizes.bulk_bytes)
    with t.meter.span("blob_push_monolithic", sizes.bulk_bytes):
        await t.registry.push_streamed("bench/bulk", big.blob, big.pieces())
    t.big_blob = big.blob


async def blob_push_chunked(t: Target, sizes: Sizes, rep: int) -> None:
    """PATCH the large body in `chunk_bytes` pieces with Content-Range, then close with PUT."""
    big = PatternBlob.random(sizes.bulk_bytes)
    chunk = big.piece * (sizes.chunk_bytes // STREAM_PIECE)
    with t.meter.span("blob_push_chunked", sizes.bulk_bytes):
        await t.registry.push_chunked("bench/bulk", big.blob, chunk)


async def blob_pull(t: Target, sizes: Sizes, rep: int) -> None:
    """GET the last monolithic blob (pushing one untimed if there is none), verifying its sha256."""
    if t.big_blob is None:
        big = PatternBlob.random(sizes.bulk_bytes)
        await t.registry.push_streamed("bench/bulk", big.blob, big.pieces())
        t.big_blob = big.blob
    blob = t.big_blob
    with t.meter.span("blob_pull", blob.size):
        await t.registry.pull_blob("bench/bulk", blob)


async def small_blob_push(t: Target, sizes: Sizes, rep: int) -> None:
    """Many distinct 4 KiB blobs, each POST + PUT, at the configured concurrency."""
    blobs = random_blobs(sizes.small_count, sizes.small_size)

    async def push(i: int) -> None:
        await t.registry.push_blob("bench/small", *blobs[i])

    with t.meter.span("small_blob_push", sizes.small_count):
        await in_parallel(sizes.small_count, sizes.concurrency, push)


async def manifests(t: Target, sizes: Sizes, rep: int) -> None:
    """PUT distinct manifests under new tags of one repository, then GET each back by tag.

    Each repeat uses its own repository so every repeat starts from the same (empty) tag set.
    """
    repo = f"bench/manifests{rep}"
    config, layers = await push_image_parts(t.registry, repo, 1)
    bodies = [image_manifest(config, layers, f"{rep}-{i}") for i in range(sizes.manifest_count)]

    async def put(i: int) -> None:
        await t.registry.put_manifest(repo, f"t{i:05d}", bodies[i])

    async def get(i: int) -> None:
        if await t.registry.get_manifest(repo, f"t{i:05d}") != bodies[i]:
            raise WireError(f"manifest {repo}:t{i:05d} came back with different bytes")

    with t.meter.span("manifest_put", sizes.manifest_count):
        await in_parallel(sizes.manifest_count, sizes.concurrency, put)
    with t.meter.span("manifest_get", sizes.manifest_count):
        await in_parallel(sizes.manifest_count, sizes.concurrency, get)


async def blob_head(t: Target, sizes: Sizes, rep: int) -> None:
    """HEAD a set of small blobs round-robin, the check every client does before pushing."""
    blobs = random_blobs(sizes.head_blobs, sizes.small_size)
    repo = f"bench/head{rep}"

    async def push(i: int) -> None:
        await t.registry.push_blob(repo, *blobs[i])

    async def head(i: int) -> None:
        await t.registry.head_blob(repo, blobs[i % len(blobs)][0])

    await in_parallel(len(blobs), sizes.concurrency, push)
    with t.meter.span("blob_head", sizes.head_count):
        await in_parallel(sizes.head_count, sizes.concurrency, head)


async def tags_list(t: Target, sizes: Sizes, rep: int) -> None:
    """List a repository's tags whole, then walk it in pages of `page_size` following Link.

    The tags are pushed on the first repeat only, so every repeat lists the same repository.
    """
    repo = "bench/tags"
    tags = [f"v{i:05d}" for i in range(sizes.tag_count)]
    if rep == 0:
        config, layers = await push_image_parts(t.registry, repo, 0)
        body = image_manifest(config, layers, "tags")
        await in_parallel(len(tags), sizes.concurrency, lambda i: t.registry.put_manifest(repo, tags[i], body))
    page_counts: set[int] = set()

    async def read(path: str) -> None:
        listed, pages = await t.registry.list_all(path, "tags")
        if len(listed) != len(tags) or set(listed) != set(tags):
            raise WireError(f"{path}: {len(listed)} tags listed, {len(set(listed))} distinct, "
                            f"expected the {len(tags)} pushed")
        if listed != tags:  # the spec wants lexical order; docker-registry 2.8 lists in hash order
            t.registry.notes.add(f"{path.split('?')[0]}: tags not in lexical order")
        page_counts.add(pages)

    with t.meter.span("tags_list_full", sizes.tag_list_count):
        await in_parallel(sizes.tag_list_count, sizes.concurrency,
                          lambda _: read(f"/v2/{repo}/tags/list"))
    page_counts.clear()
    with t.meter.span("tags_list_paged", sizes.tag_walk_count):
        await in_parallel(sizes.tag_walk_count, sizes.concurrency,
                          lambda _: read(f"/v2/{repo}/tags/list?n={sizes.page_size}"))
    expected_pages = -(-sizes.tag_count // sizes.page_size)
    if page_counts != {expected_pages}:
        t.registry.notes.add(f"tags list ?n={sizes.page_size}: {sorted(page_counts)} page(s) for "
                             f"{sizes.tag_count} tags (expected {expected_pages})")


async def _repositories(t: Target, names: list[str], concurrency: int) -> None:
    """Make each named repository hold an image: its blobs mounted from one pushed once, then
    a manifest PUT (three requests a repository, the same on both servers)."""
    base = f"{names[0]}-base"
    config, layers = await push_image_parts(t.registry, base, 1)

    async def create(i: int) -> None:
        for blob in (config, *layers):
            await t.registry.mount_blob(names[i], blob, base)
        await t.registry.put_manifest(names[i], "v1", image_manifest(config, layers, names[i]))

    await in_parallel(len(names), concurrency, create)


async def _walks(t: Target, figure: str, names: list[str], page: int, count: int, concurrency: int) -> None:
    """`count` walks of the whole catalog with `n=page`, following Link, each checked complete."""
    async def read(_: int) -> None:
        listed, _pages = await t.registry.list_all(f"/v2/_catalog?n={page}", "repositories")
        missing = set(names) - set(listed)
        if missing:
            raise WireError(f"catalog lacks {len(missing)} of {len(names)} repositories, e.g. {sorted(missing)[0]}")

    with t.meter.span(figure, count):
        await in_parallel(count, concurrency, read)


async def catalog(t: Target, sizes: Sizes, rep: int) -> None:
    """Many small repositories, then whole catalog walks: n=1000 and paged n=100, following Link.

    The repositories are created on the first repeat only, so every repeat reads the same catalog.
    """
    names = [f"cat/r{i:04d}" for i in range(sizes.repo_count)]
    if rep == 0:
        await _repositories(t, names, sizes.concurrency)
    await _walks(t, "catalog", names, 1000, sizes.catalog_count, sizes.concurrency)
    await _walks(t, "catalog_paged", names, 100, sizes.catalog_count, sizes.concurrency)


async def catalog_large(t: Target, sizes: Sizes, rep: int) -> None:
    """The same walks over `large_repo_count` repositories (on top of the small catalog's)."""
    if not sizes.large_repo_count:
        return
    names = [f"big/r{i:05d}" for i in range(sizes.large_repo_count)]
    if rep == 0:
        await _repositories(t, names, sizes.concurrency)
    count, concurrency = sizes.large_catalog_count, min(sizes.concurrency, sizes.large_catalog_count)
    await _walks(t, "catalog_large", names, 1000, count, concurrency)
    await _walks(t, "catalog_large_paged", names, 100, count, concurrency)


WORKLOADS = [
    Workload("blob_push_monolithic", blob_push_monolithic, bulk=True),
    Workload("blob_push_chunked", blob_push_chunked, bulk=True),
    Workload("blob_pull", blob_pull, bulk=True),
    Workload("small_blob_push", small_blob_push, bulk=False),
    Workload("manifests", manifests, bulk=False),
    Workload("blob_head", blob_head, bulk=False),
    Workload("tags_list", tags_list, bulk=False),
    Workload("catalog", catalog, bulk=False),
    Workload("catalog_large", catalog_large, bulk=False),
]
