"""`ocistore topology` with `http.tls`: every replica serves TLS itself (the balancer passes
the bytes through), each with the certificate renewed in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import push_random_image
from tests.certs import client_context, served_serial
from tests.servers import OcistoreTopology, wait_until
from tests.tls.conftest import PKI


@pytest.fixture
def topology(tmp_path: Path, pki: PKI) -> Iterator[OcistoreTopology]:
    (tmp_path / "topology").mkdir()
    topo = OcistoreTopology(tmp_path / "topology", None, replicas=2, verify=client_context(pki.ca_path),
                            extra={"http": {"tls": {"cert": str(pki.cert), "key": str(pki.key)}}})
    try:
        yield topo.start()
    finally:
        topo.stop()


def test_the_topology_serves_https_through_the_balancer_and_on_every_replica(topology: OcistoreTopology,
                                                                             pki: PKI) -> None:
    assert topology.url.startswith("https://") and all(r.startswith("https://") for r in topology.replicas)
    verify = client_context(pki.ca_path)
    with httpx.Client(base_url=topology.url, verify=verify, timeout=30) as client:
        image = push_random_image(client, "topo/tls", "v1")
    for replica in topology.replicas:
        with httpx.Client(base_url=replica, verify=verify, timeout=30) as client:
            got = client.get("/v2/topo/tls/manifests/v1", headers={"Accept": image.media_type})
            assert got.status_code == 200 and got.content == image.manifest
    renewed = pki.ca.issue("localhost")
    for path, data in ((pki.key, renewed.key_pem()), (pki.cert, renewed.cert_pem)):
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    for replica in topology.replicas:
        port = urlsplit(replica).port
        assert port is not None
        assert wait_until(lambda p=port: served_serial("127.0.0.1", p, pki.ca_path) == renewed.serial, 15), \
            topology.log()
