"""ocistore's configuration: zot's format as typed models (pydantic), one per block."""

from .base import ConfigError
from .drivers import (
    CacheDriverConfig,
    DynamoDBCacheConfig,
    EmbeddedCacheConfig,
    RedisCacheConfig,
    S3DriverConfig,
)
from .extensions import MetricsConfig, ScrubConfig
from .model import REDIS_URL_ENV, Config, json_schema, load_config, parse_config
from .retention import KeepTags, KeepUntagged, Retention, RetentionPolicy
from .server import HTTPConfig, LogConfig
from .storage import GlobalStorageConfig, StorageConfig, SubPathConfig, store_location

__all__ = ["REDIS_URL_ENV", "CacheDriverConfig", "Config", "ConfigError", "DynamoDBCacheConfig", "EmbeddedCacheConfig",
           "GlobalStorageConfig", "HTTPConfig", "KeepTags", "KeepUntagged", "LogConfig", "MetricsConfig",
           "RedisCacheConfig", "Retention", "RetentionPolicy", "S3DriverConfig", "ScrubConfig", "StorageConfig",
           "SubPathConfig", "json_schema", "load_config", "parse_config", "store_location"]
