"""Large manifests do not pile up in the server's memory.

The parsed-manifest memo was bounded by entries only (65,536): 40 manifests of 3.8 MiB took
a server from 60 to 498 MiB.  Now what is kept of a manifest is compact and the memo is
bounded by bytes, so the same workload (half with a huge annotation, half with thousands of
layer descriptors) must keep the real server process under 200 MiB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest_of, push_blob, push_manifest
from tests.servers import OcistoreServer

MANIFESTS = 40
TARGET = int(3.8 * (1 << 20))
RSS_LIMIT_MIB = 200


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OcistoreServer]:
    srv = OcistoreServer(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def big_manifest(config: dict[str, object], layer: dict[str, object], i: int) -> bytes:
    doc: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config}
    if i % 2:
        doc["layers"] = [layer]
        doc["annotations"] = {"org.example.padding": os.urandom(TARGET // 2).hex(), "n": str(i)}
    else:
        entry = json.dumps({**layer, "annotations": {"n": str(i)}})
        doc["layers"] = [{**layer, "annotations": {"n": str(i)}}] * (TARGET // (len(entry) + 1))
    body = json.dumps(doc).encode()
    assert 3 << 20 < len(body) < 4 << 20
    return body


def test_rss_stays_bounded_through_40_manifests_of_3_8_mib(server: OcistoreServer) -> None:
    repo = "memory/big"
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        config_bytes, layer_bytes = b'{"os":"linux"}', os.urandom(1000)
        push_blob(client, repo, config_bytes)
        push_blob(client, repo, layer_bytes)
        config, layer = descriptor(OCI_CONFIG, config_bytes), descriptor(OCI_LAYER, layer_bytes)
        before = server.rss_kib()
        peak = before
        for i in range(MANIFESTS):
            body = big_manifest(config, layer, i)
            push_manifest(client, repo, f"v{i}", body)
            peak = max(peak, server.rss_kib())
        # Read them back: parsed again for the referrers walk, served whole by tag.
        assert client.get(f"/v2/{repo}/referrers/{digest_of(b'none')}").json()["manifests"] == []
        resp = client.get(f"/v2/{repo}/manifests/v{MANIFESTS - 1}")
        assert resp.status_code == 200 and len(resp.content) > 3 << 20
        peak = max(peak, server.rss_kib())
    print(f"RSS {before // 1024} -> {peak // 1024} MiB")
    assert peak < RSS_LIMIT_MIB * 1024, f"RSS went from {before // 1024} to {peak // 1024} MiB"
