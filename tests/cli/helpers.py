"""Running the real commands, and filling stores for them through a real `ocistore serve`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest_of, push_blob, push_manifest
from tests.servers import BIN, OcistoreServer

TIMEOUT = 120


def run(*args: str, prog: str = "ocistore") -> subprocess.CompletedProcess[str]:
    """`PROG ARGS...` to its end; stdout and stderr kept apart."""
    return subprocess.run([str(BIN / prog), *args], capture_output=True, text=True, timeout=TIMEOUT)


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    """A command with --json: its exit status and the one document its stdout holds."""
    done = run(*args, "--json")
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout of {args} is not one JSON document ({exc}):\n"
                             f"{done.stdout}\n{done.stderr}") from None


def on_terminal(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`ocistore ARGS...` with its stderr on a pseudo-terminal of 120 columns (stdout a pipe), as
    an operator runs it; returns the process and everything written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        proc = subprocess.Popen([str(BIN / "ocistore"), *args], stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        slave = -1
        reader.start()
        stdout, _ = proc.communicate(timeout=TIMEOUT)
        reader.join(TIMEOUT)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""), b"".join(seen).decode(errors="replace")


@dataclass
class Pushed:
    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def blobs(self) -> list[bytes]:
        """Every stored file the image made: manifest, config, layers."""
        return [self.manifest, self.config, *self.layers]


def push_image(client: httpx.Client, repo: str, tag: str, layers: list[bytes], config: bytes | None = None) -> Pushed:
    """An image of these layers (and a config of its own unless given), pushed whole under `tag`."""
    config = config if config is not None else json.dumps({"os": "linux", "nonce": os.urandom(8).hex()}).encode()
    for blob in (config, *layers):
        push_blob(client, repo, blob)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(OCI_LAYER, layer) for layer in layers]}).encode()
    push_manifest(client, repo, tag, body)
    return Pushed(body, config, layers)


def blob_path(server: OcistoreServer, repo: str, data: bytes) -> Path:
    algorithm, encoded = digest_of(data).split(":", 1)
    return server.root / repo / "blobs" / algorithm / encoded


def age_everything(server: OcistoreServer, seconds: float) -> None:
    """Every file of the store gets a time `seconds` ago: what waiting that long would do."""
    then = time.time() - seconds
    for path in server.root.rglob("*"):
        os.utime(path, (then, then), follow_symlinks=False)


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path
