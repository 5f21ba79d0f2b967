"""Real processes for the tests: an `ocistore serve` on a free loopback port.

No in-process app and no fakes: the API suite talks HTTP to the same command a user runs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0,
              verify: ssl.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1.0, verify=verify)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> float | None:
    """Poll until `predicate` holds; the time.time() it first held, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.time()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def write_config(workdir: Path, storage: dict[str, Any] | None,
                 extra: dict[str, Any] | None) -> tuple[Path, int, str, Path]:
    """A zot-format config on a free loopback port, its store under `workdir/data`; an `http`
    object in `extra` adds keys to the address and port.

    Returns (root, port, url, config path)."""
    root, port = workdir / "data", free_port()
    extra = dict(extra or {})
    storage = _embedded_index_unless_named({"rootDirectory": str(root), **(storage or {})})
    if "subPaths" in storage:
        storage["subPaths"] = {r: _embedded_index_unless_named(s) for r, s in storage["subPaths"].items()}
    config: dict[str, Any] = {
        "distSpecVersion": "1.1.0",
        "storage": storage,
        "http": {"address": "127.0.0.1", "port": str(port), **extra.pop("http", {})},
        "log": {"level": "info"},
        **extra,
    }
    path = workdir / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return root, port, f"http://127.0.0.1:{port}", path


def _embedded_index_unless_named(store: dict[str, Any]) -> dict[str, Any]:
    """A store on S3 with no cacheDriver gets the embedded holder index, as the tests mean it
    (zot's default there is a remote one: remoteCache true, which needs a cacheDriver)."""
    if "storageDriver" in store and "cacheDriver" not in store and "remoteCache" not in store:
        return {**store, "remoteCache": False}
    return store


@contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class OcistoreServer:
    """`ocistore serve CONFIG` as a child process, with its log kept for failures."""

    def __init__(self, workdir: Path, storage: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, nofile: int | None = None,
                 verify: ssl.SSLContext | None = None) -> None:
        self.workdir = workdir
        self.root, self.port, self.url, self.config_path = write_config(workdir, storage, extra)
        # With http.tls: https, the server checked with `verify` (a context trusting the test's CA).
        self.verify: ssl.SSLContext | bool = True
        if verify is not None:
            self.url, self.verify = self.url.replace("http://", "https://", 1), verify
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the server process

    def _limit(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self) -> OcistoreServer:
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "ocistore"), "serve", str(self.config_path)],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir,
            preexec_fn=self._limit if self.nofile is not None else None,
        )
        logf.close()
        wait_http(f"{self.url}/v2/", self.proc, verify=self.verify)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def repo_path(self, repo: str) -> Path:
        return repo_path(self.config_path, repo)

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def repo_path(config_path: Path, repo: str) -> Path:
    """Where a repository's layout lives on disk, following the config's subPaths."""
    storage = json.loads(config_path.read_text())["storage"]
    sub = storage.get("subPaths", {}).get("/" + repo.split("/", 1)[0])
    return Path((sub or storage)["rootDirectory"]) / repo


def stored_files(config_path: Path, repo: str) -> list[str]:
    """Every file the store holds under `repo/` (the whole store for ""), as paths relative to
    it, read from wherever the
    config keeps them (the local root, or the S3 bucket): an on-disk check that looked at the
    unused local root of an S3 deployment would pass whatever the server did."""
    storage = json.loads(config_path.read_text())["storage"]
    cfg = storage.get("subPaths", {}).get("/" + repo.split("/", 1)[0]) or storage
    driver = {k.lower(): v for k, v in (cfg.get("storageDriver") or {}).items()}
    if driver.get("name") != "s3":
        top = Path(cfg["rootDirectory"]) / repo
        return sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()) if top.exists() else []
    import boto3

    client = boto3.client("s3", endpoint_url=driver["regionendpoint"], region_name=driver["region"],
                          aws_access_key_id=driver["accesskey"], aws_secret_access_key=driver["secretkey"])
    prefix = "/".join(p for p in (driver.get("rootdirectory", "").strip("/"), repo) if p)
    prefix = f"{prefix}/" if prefix else ""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=driver["bucket"], Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))


def blob_file(root: Path, repo: str, digest: str) -> Path:
    """Where a blob of `repo` lives under the store `root`."""
    algorithm, encoded = digest.split(":", 1)
    return root / repo / "blobs" / algorithm / encoded


def all_gone(root: Path, repo: str, digests: list[str]) -> Callable[[], bool]:
    """A predicate for wait_until: none of these blobs is on disk any more."""
    return lambda: not any(blob_file(root, repo, d).exists() for d in digests)


def require_tool(name: str) -> str:
    """A tool the tests need: its absence is a failure (make test installs it), never a skip."""
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed; run `make test`, which installs it")
    return path


def env_without_proxy() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(k, None)
    return env


class RedisServer:
    """A `redis-server` on a fixed loopback port that a test may stop and start again."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.binary = require_tool("redis-server")
        self.workdir = workdir
        self.host = host
        self.port = free_port()
        self.url = f"redis://{host}:{self.port}/0"
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            # Protected mode refuses every address but loopback: a test's other hosts must reach it.
            [self.binary, "--port", str(self.port), "--bind", self.host, "--protected-mode",
             "yes" if self.host == "127.0.0.1" else "no", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=logf, stderr=subprocess.STDOUT,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=1,
                                    socket_connect_timeout=1).ping())
        except redis.exceptions.RedisError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port, empty (no persistence), as after a crash."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class OcistoreTopology:
    """`ocistore topology CONFIG --replicas N`: replicas behind a load balancer, both workers.

    Shaped like OcistoreServer (url, port, root, config_path), so a suite written for one
    server runs unchanged against the scaled topology.
    """

    def __init__(self, workdir: Path, redis_url: str | None, storage: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, replicas: int = 2,
                 verify: ssl.SSLContext | None = None) -> None:
        self.workdir = workdir
        # Without a redis URL the launcher starts a redis-server of its own.
        self.root, self.port, self.url, self.config_path = write_config(
            workdir, storage, {**({"redis": redis_url} if redis_url else {}), **(extra or {})})
        self.verify: ssl.SSLContext | bool = True  # as OcistoreServer's
        if verify is not None:
            self.url, self.verify = self.url.replace("http://", "https://", 1), verify
        self.replicas_wanted = replicas
        self.state_path = workdir / "state.json"
        self.log_path = workdir / "topology.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.replicas: list[str] = []
        self.logs: Path | None = None
        self.pids: list[int] = []
        self.state: dict[str, Any] = {}  # the launcher's --state file, once it has written it

    def start(self, timeout: float = 60.0) -> OcistoreTopology:
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "ocistore"), "topology", str(self.config_path), "--replicas", str(self.replicas_wanted),
             "--state", str(self.state_path), "--logs", str(self.workdir / "logs")],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while not state:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ocistore topology exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"no state file after {timeout}s:\n{self.log()}")
            try:
                state = json.loads(self.state_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.1)
        self.state = state
        self.replicas = [str(u) for u in state["replicas"]]
        self.logs = Path(str(state["logs"]))
        self.pids = [int(p) for p in state["pids"]]
        try:
            for url in [self.url, *self.replicas]:
                wait_http(f"{url}/v2/", self.proc, timeout, verify=self.verify)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the launcher, which stops its children; kill what it left if it had to be killed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
                return
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"ocistore" in f.read()
                if ours:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def repo_path(self, repo: str) -> Path:
        return repo_path(self.config_path, repo)

    def log(self) -> str:
        parts = [self.log_path.read_text(errors="replace") if self.log_path.exists() else ""]
        if self.logs is not None:
            parts += [f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.logs.glob("*.log"))]
        return "\n".join(parts)

    def process_logs(self) -> list[Path]:
        """Each started process's log file, by name (none before the launcher has written its state)."""
        return sorted(self.logs.glob("*.log")) if self.logs is not None else []

    def process_log(self, name: str) -> str:
        """One process's log, by the launcher's name for it (api-1, gc-worker, scrub-worker)."""
        path = self.logs / f"{name}.log" if self.logs is not None else None
        return path.read_text(errors="replace") if path is not None and path.exists() else ""
