"""`ocistore topology`: the scaled topology as local processes, without containers.

The same shape as docker-compose.yml: a real `redis-server` (started here unless the
config names one), N `ocistore-api` replicas on their own ports, a round-robin TCP
load balancer on the published port, one `ocistore-gc-worker` and one
`ocistore-scrub-worker`.  Used by the tests, and for trying the scaled mode on a laptop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocistore.config import Config

log = logging.getLogger("ocistore.topology")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def balance(address: str, port: int, backends: list[int]) -> None:
    """Round-robin TCP proxy: each client connection goes to the next replica."""
    turn = itertools.cycle(backends)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", next(turn))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))

    server = await asyncio.start_server(handle, address, port)
    async with server:
        await server.serve_forever()


class Topology:
    def __init__(self, config_path: Path, config: Config, replicas: int, workdir: Path) -> None:
        self.config_path = config_path
        self.config = config
        self.replicas = replicas
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.api_ports: list[int] = []

    def _spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        logf = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        env = dict(os.environ)
        # One host: every process writes its series where each replica's /metrics reads them all.
        metrics_dir = self.workdir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        if not self.config.redis_url:
            redis_server = shutil.which("redis-server")
            if redis_server is None:
                raise SystemExit("redis-server is not installed (apt-get install redis-server)")
            port = free_port()
            proc = self._spawn([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(self.workdir)], "redis")
            _wait_port(port, proc)
            env["OCISTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            self.config = self.config.model_copy(update={"redis": env["OCISTORE_REDIS_URL"]})
        for i in range(self.replicas):
            port = free_port()
            proc = self._spawn([str(BIN / "ocistore-api"), str(self.config_path), "--port", str(port)],
                               f"api-{i + 1}", env)
            self.api_ports.append(port)
            _wait_port(port, proc)
        for worker in ("gc-worker", "scrub-worker"):
            self._spawn([str(BIN / f"ocistore-{worker}"), str(self.config_path)], worker, env)

    def describe(self) -> dict[str, object]:
        # With http.tls every replica serves TLS itself; the balancer passes the bytes through.
        scheme = "https" if self.config.http.tls else "http"
        return {
            "url": f"{scheme}://{self.config.http.address}:{self.config.http.port}",
            "replicas": [f"{scheme}://127.0.0.1:{p}" for p in self.api_ports],
            "redis": self.config.redis_url,
            "logs": str(self.workdir),
            "pids": [p.pid for p in self.procs],
        }

    def stop(self) -> None:
        """Last started, first stopped: the workers and replicas finish before Redis goes."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run(config_path: Path, config: Config, replicas: int, state_file: Path | None, logs: Path | None) -> None:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    workdir = logs or Path(tempfile.mkdtemp(prefix="ocistore-topology-"))
    topo = Topology(config_path, config, replicas, workdir)
    try:
        topo.start()
        info = topo.describe()
        if state_file:
            state_file.write_text(json.dumps(info))
        print(json.dumps(info, indent=2), flush=True)
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        try:
            loop.run_until_complete(balance(config.http.address, config.http.port, topo.api_ports))
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()
    finally:
        topo.stop()
