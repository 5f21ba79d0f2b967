"""`ocistore verify`: what `serve` needs, checked before it is needed.

Without `--connect` nothing is dialled: the config parses, and the directories it names can
be written and the files it names read (`http.tls`: the certificate, the key that matches it
and the CA certificates all load as `serve` loads them). With `--connect`, each server the config names
(Redis, S3, DynamoDB) is reached with the configured credentials.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from ocistore.auth import Access
from ocistore.config import (
    Config,
    ConfigError,
    DynamoDBCacheConfig,
    EmbeddedCacheConfig,
    RedisCacheConfig,
    StorageConfig,
)
from ocistore.config.base import redact
from ocistore.durations import format_duration
from ocistore.tls import check_files


def problems_on_disk(config: Config) -> list[str]:
    """Directories the config names that this process could not write, files it could not read."""
    found: list[str] = []
    for where, store in _stores(config):
        if store.storage_driver is None and store.root_directory is not None:
            _writable_dir(f"{where}.rootDirectory", store.root_directory, found)
        if store.dedupe and (store.cache_driver is None or isinstance(store.cache_driver, EmbeddedCacheConfig)):
            _writable_dir(f"{where} holder index (cache.db)", store.holder_index_dir, found)
    if config.log.output:
        _writable_dir("log.output", str(Path(config.log.output).parent), found)
    found += check_files(config.http.tls)
    try:
        Access(config.http)  # what `serve` does first: the htpasswd file must be there, all bcrypt
    except ConfigError as exc:
        found.append(str(exc))
    return found


def summary(config: Config) -> dict[str, Any]:
    """What a config that verifies sets up, as `verify --json` prints it (durations in seconds)."""
    stores: dict[str, Any] = {}
    for route, s in {"/": config.storage, **config.storage.sub_paths}.items():
        where: dict[str, Any] = ({"driver": "s3", "bucket": s.storage_driver.bucket,
                                  "root_directory": s.storage_driver.rootdirectory} if s.storage_driver
                                 else {"driver": "local", "root_directory": s.root_directory})
        cache = (s.cache_driver.name if s.cache_driver else "embedded") if s.dedupe else None
        stores[route] = {**where, "dedupe": s.dedupe, "cache": cache, "gc": s.gc, "gc_delay_seconds": s.gc_delay,
                         "gc_interval_seconds": s.gc_interval, "commit": s.commit}
    http = config.http
    rl = http.ratelimit
    htpasswd = http.auth.htpasswd if http.auth is not None else None
    return {
        "stores": stores,
        "listen": f"{'https' if http.tls else 'http'}://{http.address}:{http.port}",
        "client_ca": http.tls.cacert if http.tls else None,
        "rate_limits": ({"rate": rl.rate, "methods": [{"method": m.method, "rate": m.rate} for m in rl.methods]}
                        if rl else None),
        "htpasswd": ({"path": htpasswd.path, "fail_delay_seconds": http.auth.fail_delay, "realm": http.realm}
                     if htpasswd is not None and http.auth is not None else None),
        "access_control": ({"repository_globs": len(http.access_control.repositories),
                            "admins": http.access_control.admin_policy.users} if http.access_control else None),
        "redis": redact("redis", config.redis_url) if config.redis_url else None,
        "scrub_interval_seconds": config.scrub.interval if config.scrub.enable else None,
    }


def summary_lines(facts: dict[str, Any]) -> list[str]:
    """`summary` for people."""
    lines = []
    for route, s in facts["stores"].items():
        where = f"s3 {s['bucket']}/{s['root_directory']}" if s["driver"] == "s3" else f"local {s['root_directory']}"
        lines.append(f"store {route}: {where}, dedupe {s['dedupe']} (cache {s['cache'] or 'none'}), gc {s['gc']}, "
                     f"gcDelay {format_duration(s['gc_delay_seconds'])}, "
                     f"gcInterval {format_duration(s['gc_interval_seconds'])}, commit {s['commit']}")
    ca = facts["client_ca"]
    lines.append(f"listens on {facts['listen']}" + (f" (client certificates from {ca})" if ca else ""))
    rl = facts["rate_limits"]
    if rl and (rl["rate"] or rl["methods"]):
        rates = ([f"{rl['rate']}/s"] if rl["rate"] else []) + [f"{m['method']} {m['rate']}/s" for m in rl["methods"]]
        lines.append(f"rate limits per client: {', '.join(rates)}")
    if (h := facts["htpasswd"]) is not None:
        lines.append(f"logins from {h['path']} (failDelay {h['fail_delay_seconds']}s, realm {h['realm']!r})")
    if (a := facts["access_control"]) is not None:
        lines.append(f"access control: {a['repository_globs']} repository globs, "
                     f"admins {', '.join(a['admins']) or 'none'}")
    if facts["redis"]:
        lines.append(f"redis {facts['redis']}")
    if facts["scrub_interval_seconds"] is not None:
        lines.append(f"scrub every {format_duration(facts['scrub_interval_seconds'])}")
    return lines


def _stores(config: Config) -> list[tuple[str, StorageConfig]]:
    return [("storage", config.storage)] + [(f"storage.subPaths.{r}", s) for r, s in config.storage.sub_paths.items()]


def _writable_dir(what: str, directory: str, found: list[str]) -> None:
    """Writable, or creatable: the nearest existing ancestor is a writable directory."""
    path = Path(directory).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        found.append(f"{what}: {path}: {probe} is not a directory")
    elif not os.access(probe, os.W_OK | os.X_OK):
        found.append(f"{what}: {path}: {probe} is not writable by this user")


def problems_connecting(config: Config) -> list[str]:
    return asyncio.run(_connect_all(config))


async def _connect_all(config: Config) -> list[str]:
    found: list[str] = []
    if config.redis_url:
        await _redis("redis", config.redis_url, found)
    for where, store in _stores(config):
        if isinstance(store.cache_driver, RedisCacheConfig) and store.remote_cache:
            await _redis(f"{where}.cacheDriver", store.cache_driver.target, found)
        if isinstance(store.cache_driver, DynamoDBCacheConfig) and store.remote_cache:
            await _dynamodb(f"{where}.cacheDriver", store.cache_driver, found)
        if store.storage_driver is not None:
            await _s3(f"{where}.storageDriver", store, found)
    return found


async def _redis(where: str, url: str, found: list[str]) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:  # any failure to reach it is the finding
        found.append(f"{where}: cannot reach {redact(where, url)}: {exc}")
    finally:
        await client.aclose()


async def _s3(where: str, store: StorageConfig, found: list[str]) -> None:
    from ocistore.storage.s3 import S3Driver

    assert store.storage_driver is not None
    driver = S3Driver(store.storage_driver)
    try:
        await driver.list("")
    except Exception as exc:  # any failure to reach it is the finding
        found.append(f"{where}: bucket {store.storage_driver.bucket}: {exc}")
    finally:
        await driver.close()


async def _dynamodb(where: str, cache: DynamoDBCacheConfig, found: list[str]) -> None:
    """A GetItem of a key nobody uses: one of the actions zot documents for its table."""
    import aioboto3

    try:
        async with aioboto3.Session().client("dynamodb", region_name=cache.region or "us-east-1",
                                             endpoint_url=cache.endpoint) as db:
            await db.get_item(TableName=cache.cachetablename, Key={"Digest": {"S": f"verify-{uuid.uuid4()}"}})
    except Exception as exc:  # any failure to reach it is the finding
        found.append(f"{where}: table {cache.cachetablename}: {exc}")
