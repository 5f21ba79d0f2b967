"""The free-form maps zot passes to a driver: `storageDriver` and `cacheDriver`.

zot hands `storageDriver` to Distribution's drivers, of which ocistore offers s3; the other
names are refused with the reason. `cacheDriver` is the holder index (zot's dedupe cache).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import BeforeValidator, Discriminator, Tag, field_validator, model_validator

from .base import Driver, Flag, Whole, key_error, settle
from .redis_url import RedisOptions, check_redis_url

MIB = 1 << 20
MIN_PART = 5 * MIB  # S3's smallest part, except the last one of an upload
MAX_COPY = 5 << 30  # S3's largest CopyObject source and largest part
DEFAULT_CHUNK = 10 * MIB
# Classes whose objects are readable at once: an archived blob could not be served.
STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
    "NONE",  # as in Distribution: send no storage class, for S3-compatible stores that refuse the header
})
OTHER_STORAGE_DRIVERS = {
    "gcs": "the gcs storage driver is not offered: ocistore stores on local disk or S3 "
           "(Google Cloud Storage serves the S3 API through its interoperability endpoint)",
    "azure": "the azure storage driver is not offered: ocistore stores on local disk or S3",
    "filesystem": "local disk needs no storageDriver: leave the block out and set rootDirectory",
    "inmemory": "an in-memory store loses every push on restart: not offered",
}


def _text(value: Any) -> Any:
    return None if value == "" else value


class S3DriverConfig(Driver):
    """zot's `storageDriver` for S3 (Distribution's s3-aws parameters that ocistore honours)."""

    REFUSED: ClassVar[dict[str, str]] = {
        "encrypt": "server-side encryption: enable the bucket's default encryption instead",
        "keyid": "KMS keys: enable the bucket's default encryption instead",
        "v4auth": "requests are always signed with SigV4",
        "multipartcopychunksize": "copies use chunksize",
        "multipartcopymaxconcurrency": "copies use chunksize",
        "multipartcopythresholdsize": "copies use chunksize",
        "objectacl": "object ACLs: use a bucket policy",
        "accelerate": "transfer acceleration",
        "usedualstack": "dual-stack endpoints: give regionendpoint",
    }

    name: Literal["s3"] = "s3"
    bucket: str
    region: Annotated[str | None, BeforeValidator(_text)] = None
    regionendpoint: Annotated[str | None, BeforeValidator(_text)] = None
    # zot sets it when regionendpoint is given and it is not (root.go applyDefaultValues).
    forcepathstyle: Flag | None = None
    rootdirectory: str = ""
    secure: Flag = True
    skipverify: Flag = False
    accesskey: Annotated[str | None, BeforeValidator(_text)] = None
    secretkey: Annotated[str | None, BeforeValidator(_text)] = None
    sessiontoken: Annotated[str | None, BeforeValidator(_text)] = None
    chunksize: Whole = DEFAULT_CHUNK
    storageclass: str = "STANDARD"

    @field_validator("name", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not value:
            raise ValueError("required")
        return value

    @field_validator("rootdirectory")
    @classmethod
    def _root(cls, value: str) -> str:
        root = value.strip("/")
        if "\0" in root or ".." in root.split("/") or "//" in root:
            raise ValueError(f"no safe key prefix: {value!r}")
        return root

    @field_validator("chunksize")
    @classmethod
    def _chunk(cls, value: int) -> int:
        if not MIN_PART <= value <= MAX_COPY:
            raise ValueError(f"must be bytes in [{MIN_PART}, {MAX_COPY}]")
        return value

    @field_validator("storageclass")
    @classmethod
    def _class(cls, value: str) -> str:
        if value.upper() not in STORAGE_CLASSES:
            raise ValueError(f"must be one of {', '.join(sorted(STORAGE_CLASSES))}")
        return value.upper()

    @model_validator(mode="after")
    def _endpoint(self) -> S3DriverConfig:
        if bool(self.accesskey) != bool(self.secretkey):
            raise ValueError("accesskey and secretkey go together")
        if self.regionendpoint:
            endpoint = self.regionendpoint
            if "://" not in endpoint:
                endpoint = f"{'https' if self.secure else 'http'}://{endpoint}"
            parsed = urlparse(endpoint)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"regionendpoint is no http(s) URL: {endpoint!r}")
            settle(self, regionendpoint=endpoint)
            if self.forcepathstyle is None:
                settle(self, forcepathstyle=True)
        return self

    @property
    def path_style(self) -> bool:
        return bool(self.forcepathstyle)


def _storage_driver_name(raw: Any) -> Any:
    if isinstance(raw, dict):
        name = next((v for k, v in raw.items() if str(k).lower() == "name"), None)
        if not isinstance(name, str) or not name:
            raise key_error("name", "required (s3)")
        if name.lower() != "s3":
            raise key_error("name", OTHER_STORAGE_DRIVERS.get(
                name.lower(), f"unknown storage driver {name!r}: ocistore offers s3 (local disk needs none)"))
    return raw


StorageDriverConfig = Annotated[S3DriverConfig, BeforeValidator(_storage_driver_name)]


class EmbeddedCacheConfig(Driver):
    """The embedded holder index: SQLite in the store's root (zot's BoltDB `cache.db` place)."""

    name: Literal["embedded", "boltdb"] = "embedded"
    rootdir: str | None = None


class RedisCacheConfig(RedisOptions):
    """zot's redis cacheDriver: a `url` (go-redis URL options translated), or the options as keys."""

    name: Literal["redis"] = "redis"
    url: str | None = None
    # zot's default is "zot"; ocistore's holder index keys differ from zot's, so sharing a
    # Redis with a zot must not mix the two under one prefix.
    keyprefix: str = "ocistore"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @property
    def target(self) -> str:
        """The Redis to use, as a URL redis-py understands."""
        return self.url or self.options_url()


class DynamoDBCacheConfig(Driver):
    name: Literal["dynamodb"] = "dynamodb"
    endpoint: Annotated[str | None, BeforeValidator(_text)] = None
    region: Annotated[str | None, BeforeValidator(_text)] = None
    cachetablename: str
    # zot's metaDB tables: accepted so zot's config loads; ocistore keeps no metaDB there.
    repometatablename: str | None = None
    imagemetatablename: str | None = None
    repoblobsinfotablename: str | None = None
    userdatatablename: str | None = None
    apikeytablename: str | None = None
    versiontablename: str | None = None


def _cache_tag(raw: Any) -> str | None:
    if isinstance(raw, dict):
        name = next((v for k, v in raw.items() if str(k).lower() == "name"), "embedded")
    else:
        name = getattr(raw, "name", None)
    if not isinstance(name, str):
        return None
    # "redis" is also a top-level key: its tag must not read as one in an error's path.
    return "cache-redis" if name.lower() == "redis" else name.lower()


def _cache_name(raw: Any) -> Any:
    if isinstance(raw, dict):
        out = {k: (v.lower() if str(k).lower() == "name" and isinstance(v, str) else v) for k, v in raw.items()}
        name = _cache_tag(out)
        if name not in ("embedded", "boltdb", "cache-redis", "dynamodb"):
            raise key_error("name", f"unknown cache driver {name!r} (embedded, boltdb, redis or dynamodb)")
        return out
    return raw


CacheDriverConfig = Annotated[
    Annotated[EmbeddedCacheConfig, Tag("embedded")] | Annotated[EmbeddedCacheConfig, Tag("boltdb")]
    | Annotated[RedisCacheConfig, Tag("cache-redis")] | Annotated[DynamoDBCacheConfig, Tag("dynamodb")],
    Discriminator(_cache_tag), BeforeValidator(_cache_name)]

__all__ = ["CacheDriverConfig", "DynamoDBCacheConfig", "EmbeddedCacheConfig", "RedisCacheConfig",
           "S3DriverConfig", "StorageDriverConfig"]
