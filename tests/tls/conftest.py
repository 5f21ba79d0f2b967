"""Fixtures of the TLS suite: a CA of the test's own, and `ocistore serve` over HTTPS with it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import CA, client_context
from tests.servers import OcistoreServer


@dataclass
class PKI:
    """A CA written to `ca_path`, and a server certificate it signed, for 127.0.0.1 and localhost."""

    directory: Path
    ca: CA
    ca_path: Path
    cert: Path
    key: Path
    serial: int

    def client(self, name: str, **names: Any) -> tuple[Path, Path]:
        """A client certificate the CA signed, written beside the others: (cert, key)."""
        return self.ca.issue(name, client=True, **names).write(self.directory, f"client-{name}")


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path)


def make_pki(tmp_path: Path) -> PKI:
    """A CA and a server certificate under `tmp_path/pki` (also for suites outside tests/tls)."""
    ca = CA()
    directory = tmp_path / "pki"
    ca_path = ca.write(directory / "ca.crt")
    issued = ca.issue("localhost")
    cert, key = issued.write(directory, "server")
    return PKI(directory, ca, ca_path, cert, key, issued.serial)


class TLSServers:
    """Starts `ocistore serve` with `http.tls` (the pki's pair; `cacert=True` adds the CA) and
    more `http` keys; each server is checked against the CA. `servers` lets a failing test
    show their logs."""

    def __init__(self, workdir: Path, pki: PKI) -> None:
        self.workdir = workdir
        self.pki = pki
        self.servers: list[OcistoreServer] = []

    def __call__(self, cacert: bool = False, **http: Any) -> OcistoreServer:
        pki = self.pki
        tls = {"cert": str(pki.cert), "key": str(pki.key), **({"cacert": str(pki.ca_path)} if cacert else {})}
        workdir = self.workdir / f"server-{len(self.servers)}"
        workdir.mkdir()
        server = OcistoreServer(workdir, extra={"http": {"tls": tls, **http}}, verify=client_context(pki.ca_path))
        self.servers.append(server)
        return server.start()


@pytest.fixture
def tls_server(tmp_path: Path, pki: PKI) -> Iterator[TLSServers]:
    servers = TLSServers(tmp_path, pki)
    try:
        yield servers
    finally:
        for server in servers.servers:
            server.stop()
