"""What the fault tests share: API replicas as processes a test can kill and bring back, and
pushers that record every write the registry acknowledged, so that after the fault each one
is checked to be there (a registry may refuse a write; it may never lose one it answered 201).

A push is blobs, then a manifest by tag, spread over the replicas it was given: a config
blob opened on one replica and closed on the other, a layer in one `POST ?digest=`, and a
chunked layer whose PATCHes alternate between replicas.  Each request's fate is classified:

- an answer in the expected set is progress, and a 201 is recorded as acknowledged;
- a connection error from a replica the test took away (`Replica.down`) is `Gone`: the
  pusher pushes the whole image again on a replica still up, and that must succeed;
- a 503 with Retry-After, when the test allows them (Redis is down), is `Refused`: that
  step is tried again;
- anything else is a failure, recorded with what was sent where.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest_of, next_link
from tests.servers import BIN, free_port, stop_process, wait_http

KIB, MIB = 1 << 10, 1 << 20
CHUNK = 256 * KIB
# Pause before a refused step is tried again: short, so the recovery is measured finely.
REFUSED_PAUSE = 0.1
# How long one step may keep being refused before the pusher calls it a failure.
STEP_PATIENCE = 30.0
CLIENT_TIMEOUT = 30.0


class Replica:
    """`ocistore-api CONFIG --port P` on a port of its own, kept across restarts."""

    def __init__(self, name: str, config_path: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.config_path = config_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        # Set before the test takes the process away, cleared once it is back: a connection
        # error from a replica that is down is expected, from one that is up a failure.
        self.down = threading.Event()
        self.generation = 0  # one more at each start: clients of an older one are dropped

    def start(self, timeout: float = 30.0) -> Replica:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "ocistore-api"), str(self.config_path), "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wait_http(f"{self.url}/v2/", self.proc, timeout)
        self.generation += 1
        self.down.clear()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, requests in flight cut off mid-way."""
        assert self.proc is not None
        self.down.set()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Worker:
    """A worker service (`ocistore-gc-worker CONFIG`) as a process."""

    def __init__(self, command: str, config_path: Path, workdir: Path) -> None:
        self.log_path = workdir / f"{command}.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([str(BIN / command), str(config_path)], stdout=out,
                                         stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """The processes a test started: stopped at teardown, each log attached to a failure
    (tests/conftest.py reads `processes`)."""

    processes: list[Any] = field(default_factory=list)

    def add(self, process: Any) -> Any:
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()


class Gone(Exception):
    """The replica was taken away while (or before) this request was sent."""


class Refused(Exception):
    """A 503 with Retry-After while the test allows them: try the step again."""


class Failed(Exception):
    """An answer or an error the registry had no business giving."""


@dataclass(frozen=True)
class Ack:
    """A write answered 201: what it was, which replica, when it was sent and answered."""

    kind: str  # "blob" or "tag"
    repo: str
    ref: str  # the blob's digest, or the tag
    digest: str
    size: int
    replica: str
    sent: float
    done: float


class Ledger:
    """Everything the pushers saw, shared by their threads."""

    def __init__(self, allow_refused: Callable[[], bool] = lambda: False) -> None:
        self.lock = threading.Lock()
        self.acks: list[Ack] = []
        self.failures: list[str] = []
        self.gone: list[str] = []  # requests cut off by a replica taken away
        self.refused: list[tuple[float, str]] = []  # (when, which replica) of each 503 allowed
        self.pushes = 0
        self.retried_pushes = 0  # pushed again on a survivor after a Gone
        self.allow_refused = allow_refused
        self.in_flight: dict[tuple[str, str], int] = {}  # (replica, method) -> requests

    def ack(self, a: Ack) -> None:
        with self.lock:
            self.acks.append(a)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def flying(self, replica: str, method: str) -> int:
        with self.lock:
            return self.in_flight.get((replica, method), 0)

    @contextmanager
    def flight(self, replica: str, method: str) -> Iterator[None]:
        with self.lock:
            self.in_flight[(replica, method)] = self.in_flight.get((replica, method), 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[(replica, method)] -= 1

    def tags(self) -> dict[tuple[str, str], str]:
        """(repo, tag) -> the digest the last acknowledged PUT of it named."""
        with self.lock:
            return {(a.repo, a.ref): a.digest for a in sorted(self.acks, key=lambda a: a.done) if a.kind == "tag"}

    def blobs(self) -> dict[tuple[str, str], int]:
        with self.lock:
            return {(a.repo, a.digest): a.size for a in self.acks if a.kind == "blob"}


@dataclass(frozen=True)
class Image:
    config: bytes
    small: bytes
    chunked: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def random_image(rng: random.Random, chunked_size: int) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    small = os.urandom(rng.randint(100, 4000))
    chunked = os.urandom(chunked_size)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, small), descriptor(OCI_LAYER, chunked)],
    }).encode()
    return Image(config, small, chunked, manifest)


def relative(location: str, digest: str | None = None) -> httpx.URL:
    """A Location as path and query, to send to whichever replica the pusher picks."""
    url = httpx.URL(httpx.URL(location).raw_path.decode())
    return url.copy_merge_params({"digest": digest}) if digest else url


class Pusher:
    """One client thread: pushes images to `repo` until `stop` is set or the deadline passes."""

    def __init__(self, name: str, repo: str, replicas: list[Replica], ledger: Ledger, stop: threading.Event,
                 deadline: float, chunked_sizes: tuple[int, int] = (300 * KIB, 900 * KIB)) -> None:
        self.name = name
        self.repo = repo
        self.replicas = replicas
        self.ledger = ledger
        self.stop = stop
        self.deadline = deadline
        self.chunked_sizes = chunked_sizes
        self.rng = random.Random(name)
        self._clients: dict[str, tuple[int, httpx.Client]] = {}

    def client(self, replica: Replica) -> httpx.Client:
        """A client per replica and start of it: connections into a killed process are dropped."""
        known = self._clients.get(replica.name)
        if known is None or known[0] != replica.generation:
            if known is not None:
                known[1].close()
            known = (replica.generation, httpx.Client(base_url=replica.url, timeout=CLIENT_TIMEOUT))
            self._clients[replica.name] = known
        return known[1]

    def close(self) -> None:
        for _, c in self._clients.values():
            c.close()

    def send(self, replica: Replica, method: str, url: str | httpx.URL, expect: tuple[int, ...],
             **kwargs: Any) -> httpx.Response:
        generation = replica.generation
        what = f"{self.name}: {method} {str(url)[:90]} via {replica.name}"
        with self.ledger.flight(replica.name, method):
            try:
                resp = self.client(replica).request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if replica.down.is_set() or replica.generation != generation:
                    with self.ledger.lock:
                        self.ledger.gone.append(f"{what}: {type(exc).__name__}")
                    raise Gone(what) from None
                raise Failed(f"{what}: {type(exc).__name__} {exc}") from None
        if resp.status_code in expect:
            return resp
        if resp.status_code == 503 and resp.headers.get("Retry-After") and self.ledger.allow_refused():
            with self.ledger.lock:
                self.ledger.refused.append((time.time(), replica.name))
            raise Refused(what)
        raise Failed(f"{what}: {resp.status_code} {resp.headers.get('Retry-After')} {resp.text[:300]}")

    def step(self, action: Callable[[], Ack | None]) -> None:
        """Run one step, again while it is refused; record what it acknowledged."""
        patience = time.monotonic() + STEP_PATIENCE
        while True:
            try:
                ack = action()
            except Refused as exc:
                if time.monotonic() > patience:
                    raise Failed(f"refused for {STEP_PATIENCE:.0f}s: {exc}") from None
                self.stop.wait(REFUSED_PAUSE)  # a client's back-off, not a synchronisation
                continue
            if ack is not None:
                self.ledger.ack(ack)
            return

    def blob_ack(self, resp: httpx.Response, data: bytes, replica: Replica, sent: float) -> Ack:
        digest = digest_of(data)
        if resp.headers.get("Docker-Content-Digest") != digest:
            raise Failed(f"{self.name}: blob 201 names {resp.headers.get('Docker-Content-Digest')}, not {digest}")
        return Ack("blob", self.repo, digest, digest, len(data), replica.name, sent, time.time())

    def push_config(self, data: bytes, opener: Replica, closer: Replica) -> Ack:
        """POST on one replica, PUT with the whole body on the other."""
        sent = time.time()
        started = self.send(opener, "POST", f"/v2/{self.repo}/blobs/uploads/", (202,))
        done = self.send(closer, "PUT", relative(started.headers["Location"], digest_of(data)), (201,),
                         content=data, headers={"Content-Type": "application/octet-stream"})
        return self.blob_ack(done, data, closer, sent)

    def push_monolithic(self, data: bytes, replica: Replica) -> Ack:
        sent = time.time()
        done = self.send(replica, "POST", f"/v2/{self.repo}/blobs/uploads/", (201,), params={"digest": digest_of(data)},
                         content=data, headers={"Content-Type": "application/octet-stream"})
        return self.blob_ack(done, data, replica, sent)

    def push_chunked(self, data: bytes, route: list[Replica]) -> Ack:
        """POST, then PATCHes alternating between the replicas, then the closing PUT."""
        sent = time.time()
        resp = self.send(route[0], "POST", f"/v2/{self.repo}/blobs/uploads/", (202,))
        location = resp.headers["Location"]
        for i, start in enumerate(range(0, len(data), CHUNK)):
            piece = data[start:start + CHUNK]
            resp = self.send(route[(i + 1) % len(route)], "PATCH", relative(location), (202,), content=piece,
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Range": f"{start}-{start + len(piece) - 1}"})
            if resp.headers.get("Range") != f"0-{start + len(piece) - 1}":
                raise Failed(f"{self.name}: PATCH at {start} answered Range {resp.headers.get('Range')}")
            location = resp.headers["Location"]
        closer = route[len(data) // CHUNK % len(route)]
        done = self.send(closer, "PUT", relative(location, digest_of(data)), (201,),
                         headers={"Content-Type": "application/octet-stream"})
        return self.blob_ack(done, data, closer, sent)

    def push_tag(self, image: Image, tag: str, replica: Replica) -> Ack:
        sent = time.time()
        resp = self.send(replica, "PUT", f"/v2/{self.repo}/manifests/{tag}", (201,), content=image.manifest,
                         headers={"Content-Type": OCI_MANIFEST})
        if resp.headers.get("Docker-Content-Digest") != image.digest:
            raise Failed(f"{self.name}: manifest 201 names {resp.headers.get('Docker-Content-Digest')}")
        return Ack("tag", self.repo, tag, image.digest, len(image.manifest), replica.name, sent, time.time())

    def push(self, image: Image, tag: str, route: list[Replica]) -> None:
        x, y = route[0], route[-1]
        # A retried step is a fresh request: a refused one left nothing a retry depends on.
        self.step(lambda: self.push_config(image.config, x, y))
        self.step(lambda: self.push_monolithic(image.small, y))
        self.step(lambda: self.push_chunked(image.chunked, route))
        self.step(lambda: self.push_tag(image, tag, y))

    def up(self) -> list[Replica]:
        return [r for r in self.replicas if not r.down.is_set()]

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                image = random_image(self.rng, self.rng.randint(*self.chunked_sizes))
                tag = f"{self.name}-{n}"
                up = self.up()
                if not up:
                    raise Failed(f"{self.name}: no replica up")
                first = self.rng.randrange(len(up))
                route = up[first:] + up[:first]
                try:
                    self.push(image, tag, route)
                except Gone:
                    # Pushed again, whole, on what is still up: this one must succeed.
                    survivors = self.up()
                    if not survivors:
                        raise Failed(f"{self.name}: {tag} cut off and no replica left") from None
                    self.push(image, tag, survivors)
                    with self.ledger.lock:
                        self.ledger.retried_pushes += 1
                with self.ledger.lock:
                    self.ledger.pushes += 1
                n += 1
        except (Failed, Gone) as exc:
            self.ledger.fail(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            self.ledger.fail(f"{self.name}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self.close()


def run_pushers(pushers: list[Pusher]) -> list[threading.Thread]:
    threads = [threading.Thread(target=p.run, name=p.name, daemon=True) for p in pushers]
    for t in threads:
        t.start()
    return threads


def all_tags(client: httpx.Client, repo: str) -> list[str]:
    tags: list[str] = []
    url: str | None = f"/v2/{repo}/tags/list"
    while url is not None:
        resp = client.get(url)
        if resp.status_code != 200:
            raise AssertionError(f"tags/list of {repo}: {resp.status_code} {resp.text[:200]}")
        tags.extend(resp.json().get("tags") or [])
        url = next_link(resp)
    return tags


def lost_writes(url: str, ledger: Ledger, threads: int = 8) -> list[str]:
    """Every acknowledged tag and blob, checked through one replica: what is missing or wrong."""
    tags, blobs = ledger.tags(), ledger.blobs()
    problems: list[str] = []
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT,
                      limits=httpx.Limits(max_connections=threads)) as client:
        listed = {repo: set(all_tags(client, repo)) for repo in {r for r, _ in tags}}

        def tag_problem(item: tuple[tuple[str, str], str]) -> str | None:
            (repo, tag), digest = item
            if tag not in listed[repo]:
                return f"{repo}:{tag} not in tags/list"
            resp = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            if resp.status_code != 200:
                return f"{repo}:{tag}: GET {resp.status_code}"
            got = f"sha256:{hashlib.sha256(resp.content).hexdigest()}"
            if got != digest or resp.headers.get("Docker-Content-Digest") != digest:
                return f"{repo}:{tag} is {got}, acknowledged as {digest}"
            return None

        def blob_problem(item: tuple[tuple[str, str], int]) -> str | None:
            (repo, digest), size = item
            resp = client.head(f"/v2/{repo}/blobs/{digest}")
            if resp.status_code != 200:
                return f"{repo}@{digest}: HEAD {resp.status_code}"
            if int(resp.headers.get("Content-Length", -1)) != size:
                return f"{repo}@{digest}: {resp.headers.get('Content-Length')} bytes, acknowledged {size}"
            return None

        with ThreadPoolExecutor(threads) as pool:
            found = [*pool.map(tag_problem, tags.items()), *pool.map(blob_problem, blobs.items())]
        problems.extend(p for p in found if p is not None)
    return problems


def index_problems(read_index: Callable[[str], bytes], ledger: Ledger) -> list[str]:
    """Each repository's stored index.json parses and holds every acknowledged tag, with its digest."""
    ref_name = "org.opencontainers.image.ref.name"
    tags = ledger.tags()
    problems: list[str] = []
    for repo in sorted({r for r, _ in tags}):
        try:
            doc = json.loads(read_index(repo))
        except (OSError, ValueError) as exc:
            problems.append(f"{repo}/index.json: {type(exc).__name__} {exc}")
            continue
        stored = {(d.get("annotations") or {}).get(ref_name): d["digest"] for d in doc["manifests"]}
        for (r, tag), digest in tags.items():
            if r == repo and stored.get(tag) != digest:
                problems.append(f"{repo}/index.json: {tag} is {stored.get(tag)}, acknowledged {digest}")
    return problems


def rate(ledger: Ledger, start: float, end: float) -> float:
    """Tags acknowledged per second between two time.time()s."""
    with ledger.lock:
        n = sum(1 for a in ledger.acks if a.kind == "tag" and start <= a.done < end)
    return n / max(end - start, 1e-9)
