"""The `storage` block: the default store, and `subPaths` stores, with zot's defaults.

zot's defaults differ between the two, and ocistore keeps them: the default store has
`dedupe` and `gc` on; a subPaths store starts from Go's zero values (both off) and gets
gcDelay and gcInterval (1h) only when its `gc` is on (zot's pkg/cli/server/root.go,
applyDefaultValues).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import Block, Duration, Flag, Whole, key_error, settle
from .drivers import CacheDriverConfig, EmbeddedCacheConfig, StorageDriverConfig
from .retention import Retention

log = logging.getLogger("ocistore.config")

DEFAULT_GC_DELAY = 3600.0
DEFAULT_GC_INTERVAL = 3600.0
DEFAULT_RETENTION_DELAY = 86400.0
_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
_ROUTE = re.compile(r"/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def _window(value: Any) -> Any:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not (m := _WINDOW.fullmatch(value.strip())):
        raise ValueError("expected a daily UTC window such as 22:00-06:00")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if start == end:
        raise ValueError("the window starts where it ends")
    return (start, end)


class StorageConfig(Block):
    """One store. ocistore's own keys are marked; the rest are zot's, with zot's meaning."""

    REFUSED: ClassVar[dict[str, str]] = {
        "redirectbloburl": "redirecting blob pulls to the bucket: ocistore serves the bytes itself",
        "maxrepos": "a repository quota",
    }

    # zot has no default and fails when it builds a local store without one.
    root_directory: str | None = None
    dedupe: Flag = True
    gc: Flag = True
    gc_delay: Duration = DEFAULT_GC_DELAY
    gc_interval: Duration = DEFAULT_GC_INTERVAL
    # "HH:MM-HH:MM" in UTC: when a periodic sweep may start (minutes of the day, start-end).
    gc_time_window: Annotated[tuple[int, int] | None, BeforeValidator(_window)] = None
    # zot's: accepted; ocistore's GC schedules itself through the message delay.
    gc_max_scheduler_delay: Duration | None = None
    commit: Flag = False
    remote_cache: Flag | None = None
    cache_driver: CacheDriverConfig | None = None
    storage_driver: StorageDriverConfig | None = None
    retention: Retention = Field(default_factory=Retention)
    # ocistore's own: bounds on open upload sessions, and when an idle one is abandoned.
    max_uploads: Annotated[Whole, Field(ge=1, le=1 << 31)] = 10000
    max_uploads_per_repository: Annotated[Whole, Field(ge=1, le=1 << 31)] = 1000
    upload_idle_timeout: Annotated[Duration, Field(gt=0)] = 900.0

    @field_validator("gc_delay", "gc_interval")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    def _gc_defaults(self) -> None:
        """What a store's own kind adds before the rest is derived (see SubPathConfig)."""

    @model_validator(mode="after")
    def _zot_defaults(self) -> StorageConfig:
        self._gc_defaults()
        given = self.model_fields_set
        update: dict[str, Any] = {}
        if not self.gc:
            # zot zeroes what it does not use; warns about what it was given.
            for key in ("gc_delay", "gc_interval", "gc_time_window"):
                if key in given:
                    log.warning("storage: %s is ignored while gc is false", key)
        if "remote_cache" not in given:
            update["remote_cache"] = bool(self.dedupe and self.storage_driver is not None)
        remote = update.get("remote_cache", self.remote_cache)
        if remote and self.dedupe and self.cache_driver is None:
            raise key_error("remoteCache", "true needs a cacheDriver (redis or dynamodb); zot makes it true by "
                            "default for a store with a storageDriver: set it to false for the embedded index")
        if not remote and self.cache_driver is not None and self.cache_driver.name in ("redis", "dynamodb"):
            # zot warns and uses its local cache; so does ocistore.
            log.warning("storage: remoteCache is false, so the %s cacheDriver is not used: the embedded "
                        "holder index is", self.cache_driver.name)
            update["cache_driver"] = EmbeddedCacheConfig()
        if self.retention.delay is None:
            settle(self.retention, delay=self.gc_delay if self.gc else 0.0)
        if self.root_directory is None and self.storage_driver is None:
            raise key_error("rootDirectory", "required for a store on local disk")
        index = update.get("cache_driver", self.cache_driver)
        embedded = index is None or isinstance(index, EmbeddedCacheConfig)
        placed = isinstance(index, EmbeddedCacheConfig) and index.rootdir
        if self.dedupe and self.root_directory is None and embedded and not placed:
            raise key_error("rootDirectory", "required for the embedded holder index (cache.db) of a deduplicated "
                            "store; or name a redis or dynamodb cacheDriver")
        settle(self, **update)
        return self

    def until_gc_window(self, now: float) -> float:
        """Seconds until a periodic sweep may start (0: now), by `gcTimeWindow` in UTC. As in
        zot, the window bounds when a sweep starts; one that started runs to its end."""
        if self.gc_time_window is None:
            return 0.0
        start, end = (m * 60 for m in self.gc_time_window)
        second = now % 86400
        inside = start <= second < end if start < end else (second >= start or second < end)
        return 0.0 if inside else (start - second) % 86400

    @property
    def holder_index_dir(self) -> str:
        """Where the embedded holder index lives (zot's `cache.db` place)."""
        if isinstance(self.cache_driver, EmbeddedCacheConfig) and self.cache_driver.rootdir:
            return self.cache_driver.rootdir
        return self.root_directory or "."

    @property
    def local_root(self) -> str:
        return self.root_directory or "."


class SubPathConfig(StorageConfig):
    """A subPaths store: Go's zero values, not the default store's (zot does not inherit)."""

    dedupe: Flag = False
    gc: Flag = False
    gc_delay: Duration = 0.0
    gc_interval: Duration = 0.0

    def _gc_defaults(self) -> None:
        if not self.gc:
            return
        if "gc_delay" not in self.model_fields_set:
            settle(self, gc_delay=DEFAULT_GC_DELAY)
        elif self.gc_delay <= 0:
            raise key_error("gcDelay", "must be above zero while gc is on")
        if "gc_interval" not in self.model_fields_set:
            settle(self, gc_interval=DEFAULT_GC_INTERVAL)
        if self.retention.delay is None:
            # zot gives a subPath with gc on its DefaultRetentionDelay, not the gcDelay the default store uses.
            settle(self.retention, delay=DEFAULT_RETENTION_DELAY)


class GlobalStorageConfig(StorageConfig):
    sub_paths: dict[str, SubPathConfig] = Field(default_factory=dict)
    # zot's: skip its start-up scan. ocistore never scans at start-up, so it starts fast either way.
    fast_restart: Flag | None = None

    @field_validator("sub_paths", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for route in value:
                if not isinstance(route, str) or not _ROUTE.fullmatch(route.lower()):
                    raise ValueError(f"invalid route {route!r}: use '/' and one name component, e.g. '/infra'")
            # zot's keys, routes included, arrive lowercased.
            return {route.lower(): sub for route, sub in value.items()}
        return value

    @model_validator(mode="after")
    def _separate_roots(self) -> GlobalStorageConfig:
        stores = [("storage", self)] + [(f"storage.subPaths.{r}", s) for r, s in self.sub_paths.items()]
        for i, (name_a, a) in enumerate(stores):
            for name_b, b in stores[i + 1:]:
                (where_a, path_a), (where_b, path_b) = store_location(a), store_location(b)
                if where_a != where_b:
                    continue
                pa, pb = path_a.rstrip("/") + "/", path_b.rstrip("/") + "/"
                if pa.startswith(pb) or pb.startswith(pa):
                    relation = "the same root" if pa == pb else "nested roots"
                    raise ValueError(f"{name_a} ({path_a}) and {name_b} ({path_b}) have {relation}: "
                                     "each store needs a root of its own")
        return self


def store_location(cfg: StorageConfig) -> tuple[str, str]:
    """(where, path) of a store's data: two stores may not share or nest them."""
    driver = cfg.storage_driver
    if driver is not None:
        return f"s3://{driver.regionendpoint or ''}/{driver.bucket}", "/" + driver.rootdirectory.strip("/")
    return "local", os.path.abspath(cfg.local_root)
