"""Starting, metering and stopping the two registries under test.

Each server runs in its own process group on a free loopback port over an empty data directory, so
runs never see each other's data and a stop can take any worker processes down with it. Where the
data lives is a `StorageBackend`: a local directory per server (`FilesystemStorage`), or one bucket
per server on a moto server on loopback that the backend starts and meters (`S3Storage`).
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# Run as a script from bench/: moto's launcher lives in the repository's `tests` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.counting_moto import CountingMoto
from tests.moto import REGION
from tests.servers import env_without_proxy

PEER_BINARY = "/usr/bin/docker-registry"
OCISTORE_BINARY = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "ocistore")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
BUCKETS = {"peer": "bench-peer", "ocistore": "bench-ocistore"}  # one per server: counts are per bucket
S3_CHUNK = 5 * (1 << 20)  # multipart part size for both servers: S3's minimum (both default to 10 MiB)


class ServerStartError(RuntimeError):
    """A registry exited or never answered `GET /v2/`; the message carries its log tail."""


class StorageBackend(Protocol):
    """Where a registry keeps its data, expressed in each server's own configuration dialect."""

    name: str

    def start(self) -> None:
        """Bring up whatever serves the storage, before any registry starts."""
        ...

    def stop(self) -> None:
        """Take it down again and drop its data; safe to call twice, or without a start."""
        ...

    def service_cpu(self) -> float | None:
        """CPU seconds so far of the storage service the backend runs, or None if it runs none."""
        ...

    def requests(self, server: str) -> dict[str, int] | None:
        """Storage requests `server` has sent so far, by action, or None where none are counted."""
        ...

    def peer_storage(self, root: Path) -> dict[str, Any]:
        """The `storage` section of docker-registry's YAML (JSON is valid YAML)."""
        ...

    def ocistore_storage(self, root: Path) -> dict[str, Any]:
        """The `storage` section of ocistore's zot-style JSON."""
        ...


class FilesystemStorage:
    """Both servers on a local directory, as in the default deployment."""

    name = "filesystem"

    def start(self) -> None:
        """Nothing to start: the servers write to their own directories."""

    def stop(self) -> None:
        """Nothing to stop: each server drops its directory when it stops."""

    def service_cpu(self) -> float | None:
        """No storage process of its own; the kernel's file I/O is charged to the servers."""
        return None

    def requests(self, server: str) -> dict[str, int] | None:
        """File system calls are not counted."""
        return None

    def peer_storage(self, root: Path) -> dict[str, Any]:
        """Filesystem driver with deletes enabled, like a registry that is garbage-collected."""
        return {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}

    def ocistore_storage(self, root: Path) -> dict[str, Any]:
        """zot's `rootDirectory`."""
        return {"rootDirectory": str(root)}


class S3Storage:
    """Both servers on S3: moto's server mode on a free loopback port, one bucket per server.

    moto keeps objects in its own memory, so it is a third process doing real work on the same CPUs
    (its CPU is metered per span, like the servers'). docker-registry's blob redirects are turned
    off so its blob bodies pass through it, as ocistore's do without `redirectBlobURL`. moto runs
    behind `tests/counting_moto.py`, which counts each server's requests by S3 action in its bucket.
    """

    name = "s3"

    def __init__(self) -> None:
        """Not started yet: `start` runs moto."""
        self._moto: CountingMoto | None = None
        self._workdir: Path | None = None

    @property
    def moto(self) -> CountingMoto:
        """The running moto server."""
        if self._moto is None:
            raise RuntimeError("S3Storage used before start()")
        return self._moto

    def start(self) -> None:
        """Start `moto_server` in a fresh directory (its log stays there) and wait for its API."""
        self._workdir = Path(tempfile.mkdtemp(prefix="ocistore-bench-moto-"))
        self._moto = CountingMoto(self._workdir)
        try:
            self._moto.start()
        except RuntimeError as exc:
            tail = self._moto.log()[-2000:]
            self.stop()
            raise ServerStartError(f"moto: {exc}:\n{tail}") from exc

    def stop(self) -> None:
        """Stop moto (SIGTERM, then SIGKILL) and drop its directory."""
        if self._moto is not None:
            self._moto.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def service_cpu(self) -> float | None:
        """moto's CPU seconds (user + system), read from /proc like the servers'."""
        proc = self.moto.proc
        return None if proc is None else tree_cpu_seconds(proc.pid)

    def requests(self, server: str) -> dict[str, int] | None:
        """The requests moto has counted in `server`'s bucket so far (read outside timed spans)."""
        return self.moto.requests(BUCKETS[server])

    def peer_storage(self, root: Path) -> dict[str, Any]:
        """Distribution 2.8's `s3` driver. Its release-2.8 parameters have no `forcepathstyle`: a
        `regionendpoint` implies path-style requests there."""
        s3 = {
            "region": REGION, "bucket": self._bucket(BUCKETS["peer"]), "regionendpoint": self.moto.url,
            "accesskey": self.moto.access_key, "secretkey": self.moto.secret_key, "secure": False,
            "v4auth": True, "chunksize": S3_CHUNK, "rootdirectory": "/peer",
        }
        return {"s3": s3, "delete": {"enabled": True}, "redirect": {"disable": True}}

    def ocistore_storage(self, root: Path) -> dict[str, Any]:
        """zot's `storageDriver` block, beside a local `rootDirectory` for the embedded holder index
        (`remoteCache: false`: zot's default for S3 wants Redis or DynamoDB, which the bench runs
        neither of); dedupe stays at zot's default, on."""
        driver = self.moto.driver_params(self._bucket(BUCKETS["ocistore"]), rootdirectory="/ocistore",
                                         chunksize=S3_CHUNK)
        return {"rootDirectory": str(root), "storageDriver": driver, "remoteCache": False}

    def _bucket(self, name: str) -> str:
        """Create the bucket `name` and return it."""
        self.moto.client().create_bucket(Bucket=name)
        return name


@dataclass
class Server:
    """One running registry process and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    workdir: Path
    # The `Authorization` value every request sends when logins are on (--auth).
    login: str | None = None

    def cpu_seconds(self) -> float:
        """User+system CPU of the server and its workers."""
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self) -> str:
        """The end of the server's output, for when it fails to start or dies."""
        text = (self.workdir / "server.log").read_text(errors="replace")
        return text[-2000:]

    def stop(self) -> None:
        """Terminate the server's process group, kill it if it lingers, and drop its data."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --auth: one htpasswd user, bcrypt at the cost htpasswd -B gives (10), on both servers.
BENCH_USER, BENCH_PASSWORD = "bench", "bench-password"


def _htpasswd(workdir: Path) -> tuple[Path, str]:
    import bcrypt

    path = workdir / "htpasswd"
    path.write_bytes(BENCH_USER.encode() + b":" + bcrypt.hashpw(BENCH_PASSWORD.encode(), bcrypt.gensalt(10)) + b"\n")
    return path, "Basic " + base64.b64encode(f"{BENCH_USER}:{BENCH_PASSWORD}".encode()).decode()


def start_peer(storage: StorageBackend, auth: bool = False) -> Server:
    """Start docker-registry (CNCF Distribution) on a fresh directory and wait until it serves."""
    workdir = Path(tempfile.mkdtemp(prefix="ocistore-bench-peer-"))
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": storage.peer_storage(workdir / "data"),
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    login = None
    if auth:
        path, login = _htpasswd(workdir)
        config["auth"] = {"htpasswd": {"realm": "bench", "path": str(path)}}
    (workdir / "config.yml").write_text(json.dumps(config))
    return _launch("peer", [PEER_BINARY, "serve", str(workdir / "config.yml")], workdir, port, login)


def start_ocistore(storage: StorageBackend, auth: bool = False) -> Server:
    """Start ocistore with a zot-style config on a fresh directory and wait until it serves."""
    workdir = Path(tempfile.mkdtemp(prefix="ocistore-bench-ocistore-"))
    port = free_port()
    config: dict[str, Any] = {
        "distSpecVersion": "1.1.0",
        "storage": storage.ocistore_storage(workdir / "data"),
        "http": {"address": "127.0.0.1", "port": str(port)},
        "log": {"level": "warn"},
    }
    login = None
    if auth:
        path, login = _htpasswd(workdir)
        config["http"]["auth"] = {"htpasswd": {"path": str(path)}}
    (workdir / "config.json").write_text(json.dumps(config))
    return _launch("ocistore", [OCISTORE_BINARY, "serve", str(workdir / "config.json")], workdir, port, login)


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _launch(name: str, argv: list[str], workdir: Path, port: int, login: str | None = None) -> Server:
    """Spawn `argv` in its own process group, tied to our life, and wait for `GET /v2/`."""
    (workdir / "data").mkdir()
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=workdir, env=_server_env(), start_new_session=True,
                                preexec_fn=_die_with_parent)
    server = Server(name, proc, f"http://127.0.0.1:{port}", workdir, login)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU of process `root` and every live descendant (reaped ones via cutime/cstime)."""
    ticks = 0
    for pid in _process_tree(root):
        fields = _stat_fields(pid)
        # utime, stime (fields 14-15) for all; cutime, cstime (16-17) of the root count its
        # reaped workers, while a live worker's own reaped children are too rare to matter.
        last = 15 if pid == root else 13
        ticks += sum(int(f) for f in fields[11:last])
    return ticks / _TICKS


def _wait_ready(server: Server) -> None:
    """Poll `GET /v2/` until 200, failing fast if the process exits and after READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerStartError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            ready = urllib.request.Request(f"{server.base_url}/v2/",
                                           headers={"Authorization": server.login} if server.login else {})
            with urllib.request.urlopen(ready, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise ServerStartError(f"{server.name} not ready after {READY_TIMEOUT:.0f}s:\n{server.log_tail()}")


def _server_env() -> dict[str, str]:
    """Our environment without proxies (moto is on loopback) and without AWS_CA_BUNDLE: its endpoint is
    plain HTTP, and docker-registry 2.8 panics at start when the variable is set ("unable to load
    custom CA bundle, HTTPClient's transport unsupported type")."""
    env = env_without_proxy()
    env.pop("AWS_CA_BUNDLE", None)
    return env


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM the child if the bench dies hard, so no server is ever orphaned."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group the server leads (it was started with its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name, so index 0 is `state` (field 3)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw[raw.rindex(")") + 2:].split()


def _process_tree(root: int) -> list[int]:
    """`root` and all its live descendants, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, frontier = [root], [root]
    while frontier:
        found = children.get(frontier.pop(), [])
        tree.extend(found)
        frontier.extend(found)
    return tree
