"""The DynamoDB cache works with exactly the permissions zot documents for its table, and no more."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from ocistore.cache import open_cache
from ocistore.config import CacheDriverConfig
from tests.moto import REGION, MotoServer
from tests.moto import moto_iam as moto_iam

D = "sha256:" + "cd" * 32
ACTIONS = ["dynamodb:CreateTable", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]

def holder_index(raw: dict[str, object] | None) -> CacheDriverConfig | None:
    """A `cacheDriver` block as a config file gives it."""
    return None if raw is None else TypeAdapter(CacheDriverConfig).validate_python(raw, context={"file": True})



def test_cache_contract_holds_under_zots_table_policy(
    moto_iam: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"blobs{uuid.uuid4().hex[:8]}"
    # moto matches actions, not table ARNs: the resource is "*", the action list is the point.
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ACTIONS, "Resource": "*"}]}
    access, secret = moto_iam.create_user(f"cache-{table}", policy)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)

    async def scenario() -> None:
        cache = open_cache(holder_index({"name": "dynamodb", "endpoint": moto_iam.url, "region": REGION,
                                         "cacheTablename": table}), str(tmp_path))
        try:
            await cache.add(D, "a/blobs/sha256/x")
            await cache.add(D, "b/blobs/sha256/x")
            assert await cache.holders(D) == ["a/blobs/sha256/x", "b/blobs/sha256/x"]
            await cache.remove(D, "a/blobs/sha256/x")
            assert await cache.original(D) == "b/blobs/sha256/x"
            await cache.remove(D, "b/blobs/sha256/x")
            assert await cache.original(D) is None
        finally:
            await cache.close()

    asyncio.run(scenario())
    # The same user may not read the table any other way: the policy really is enforced.
    denied = moto_iam.client("dynamodb", keys=(access, secret))
    with pytest.raises(Exception, match=r"AccessDenied|not authorized"):
        denied.scan(TableName=table)
