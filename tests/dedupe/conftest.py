"""Dedupe runs against every cache driver, each a real server: embedded SQLite, a real
`redis-server`, and DynamoDB on moto's server mode."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.moto import REGION, MotoServer
from tests.servers import RedisServer

# The servers this suite starts take their AWS keys from the environment, as operators' would.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

CACHES = ["embedded", "redis", "dynamodb"]


@pytest.fixture(params=CACHES)
def cache_storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The storage keys of a config whose dedupe uses the parametrised cache (fresh keys/tables)."""
    unique = uuid.uuid4().hex[:10]
    if request.param == "embedded":
        return {"dedupe": True}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("session_redis")
        return {"dedupe": True, "remoteCache": True,
                "cacheDriver": {"name": "redis", "url": redis.url, "keyprefix": f"t{unique}"}}
    if request.param == "dynamodb":
        moto: MotoServer = request.getfixturevalue("moto_s3")
        return {"dedupe": True, "remoteCache": True,
                "cacheDriver": {"name": "dynamodb", "endpoint": moto.url, "region": REGION,
                                "cacheTablename": f"blobs{unique}"}}
    raise AssertionError(request.param)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
