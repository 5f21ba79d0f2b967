"""A damaged original on S3 (bytes overwritten behind the registry's back): scrub marks it,
it is refused to every holder, and an honest push into another repository replaces it."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import push_blob
from tests.moto import MotoServer
from tests.s3.conftest import Launched, blob_objects, object_digest, run_cli
from tests.s3.test_s3_dedupe import LAYER_SIZE, assert_serves, new_repos, start_server
from tests.servers import wait_until

NOTICED_WITHIN = 30.0


def test_damaged_original_is_refused_then_repaired_by_an_honest_push(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    first, second, honest = new_repos(3)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        digest = push_blob(client, first, layer)
        push_blob(client, second, layer)
        [original] = [k for k, size in blob_objects(moto_s3, bucket, digest).items() if size > 0]
        moto_s3.client().put_object(Bucket=bucket, Key=original, Body=os.urandom(LAYER_SIZE))

        scrubbed = run_cli(launched, "scrub", str(server.config_path))
        assert scrubbed.returncode == 1 and "0 problems" not in scrubbed.stdout, scrubbed.stdout

        def refused(repo: str) -> bool:
            resp = client.get(f"/v2/{repo}/blobs/{digest}")
            return resp.status_code == 404 and "damaged" in resp.text
        for repo in (first, second):
            assert wait_until(partial(refused, repo), NOTICED_WITHIN), repo
        assert client.post(f"/v2/{honest}-m/blobs/uploads/", params={"mount": digest, "from": first}).status_code == 202

        push_blob(client, honest, layer)
        assert_serves(client, honest, layer)
        def repaired(repo: str) -> bool:
            return client.get(f"/v2/{repo}/blobs/{digest}").content == layer
        for repo in (first, second):
            assert wait_until(partial(repaired, repo), NOTICED_WITHIN), repo
        with_bytes = [k for k, size in blob_objects(moto_s3, bucket, digest).items() if size > 0]
        assert with_bytes and all(object_digest(moto_s3, bucket, k) == digest for k in with_bytes)
