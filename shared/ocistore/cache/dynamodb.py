"""The DynamoDB cache, with exactly the permissions zot documents for its table:
CreateTable, GetItem, UpdateItem, DeleteItem (no Scan, no Query, no DescribeTable).

An item per digest: `Digest` (key), `OriginalPath`, and `Holders` (a string set of every
holder, the original included).  The table is created when absent: a CreateTable that
finds it existing is the normal case and is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..config import DynamoDBCacheConfig


class DynamoDBCache:
    name = "dynamodb"

    def __init__(self, config: DynamoDBCacheConfig) -> None:
        self.table = config.cachetablename
        self.endpoint = config.endpoint
        self.region = config.region or "us-east-1"
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._ready = asyncio.Lock()

    async def _db(self) -> Any:
        async with self._ready:
            if self._client is None:
                import aioboto3
                from aiobotocore.config import AioConfig

                stack = contextlib.AsyncExitStack()
                session = aioboto3.Session()
                # A lookup is on the path of every push: with botocore's defaults (60 s to
                # connect, five attempts with backoff) an unreachable table held a push for
                # half a minute before its 503; these fail it in a few seconds.
                config = AioConfig(connect_timeout=2, read_timeout=10,
                                   retries={"mode": "standard", "max_attempts": 3})
                self._client = await stack.enter_async_context(
                    session.client("dynamodb", region_name=self.region, endpoint_url=self.endpoint, config=config)
                )
                self._stack = stack
                await self._create_table()
        return self._client

    async def _create_table(self) -> None:
        try:
            await self._client.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "Digest", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "Digest", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except self._client.exceptions.ResourceInUseException:
            pass

    async def add(self, digest: str, path: str) -> None:
        db = await self._db()
        await db.update_item(
            TableName=self.table,
            Key={"Digest": {"S": digest}},
            UpdateExpression="SET OriginalPath = if_not_exists(OriginalPath, :p) ADD Holders :ps",
            ExpressionAttributeValues={":p": {"S": path}, ":ps": {"SS": [path]}},
        )

    async def _item(self, digest: str) -> dict[str, Any] | None:
        db = await self._db()
        resp = await db.get_item(TableName=self.table, Key={"Digest": {"S": digest}}, ConsistentRead=True)
        item: dict[str, Any] | None = resp.get("Item")
        return item

    async def original(self, digest: str) -> str | None:
        item = await self._item(digest)
        return item["OriginalPath"]["S"] if item and "OriginalPath" in item else None

    async def holders(self, digest: str) -> list[str]:
        item = await self._item(digest)
        if not item:
            return []
        original = item.get("OriginalPath", {}).get("S")
        rest = sorted(p for p in item.get("Holders", {}).get("SS", []) if p != original)
        return ([original] if original else []) + rest

    async def remove(self, digest: str, path: str) -> None:
        db = await self._db()
        key = {"Digest": {"S": digest}}
        resp = await db.update_item(
            TableName=self.table, Key=key, UpdateExpression="DELETE Holders :ps",
            ExpressionAttributeValues={":ps": {"SS": [path]}}, ReturnValues="ALL_NEW",
        )
        item = resp.get("Attributes") or {}
        if item.get("OriginalPath", {}).get("S") != path:
            return
        remaining = sorted(item.get("Holders", {}).get("SS", []))
        conditions = db.exceptions.ConditionalCheckFailedException
        try:
            if remaining:
                await db.update_item(
                    TableName=self.table, Key=key, UpdateExpression="SET OriginalPath = :n",
                    ConditionExpression="OriginalPath = :o",
                    ExpressionAttributeValues={":n": {"S": remaining[0]}, ":o": {"S": path}},
                )
            else:
                await db.delete_item(TableName=self.table, Key=key,
                                     ConditionExpression="attribute_not_exists(Holders)")
        except conditions:
            pass  # someone added or promoted meanwhile: their write stands

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack, self._client = None, None
