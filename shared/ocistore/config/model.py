"""The whole config: zot's format (JSON or YAML) read unchanged, as typed models.

`parse_config` applies zot's defaults and interactions (pkg/cli/server/root.go) and
refuses what ocistore cannot honour, naming the key path and value (secrets redacted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, ValidationError, field_validator

from ..version import DIST_SPEC_VERSION
from .base import Block, ConfigError, Whole, describe
from .extensions import ExtensionsConfig, MetricsConfig, ScrubConfig
from .redis_url import check_redis_url
from .server import HTTPConfig, LogConfig
from .storage import GlobalStorageConfig

REDIS_URL_ENV = "OCISTORE_REDIS_URL"


class SchedulerConfig(Block):
    # zot's worker pool size; ocistore's maintenance runs in worker processes, scaled as processes.
    num_workers: Whole = 0


def _redis(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and str(next(iter(value))).lower() == "url":
        value = next(iter(value.values()))
    if not isinstance(value, str):
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
    return check_redis_url(value)


class Config(Block):
    REFUSED: ClassVar[dict[str, str]] = {
        "cluster": "zot's hash-based scale-out: ocistore's replicas share one store and Redis instead",
    }

    # zot overwrites it with its own, warning when they differ; so does ocistore.
    dist_spec_version: str = DIST_SPEC_VERSION
    # Build facts zot's own config may carry; meaningless to read, accepted as zot accepts them.
    go_version: str | None = None
    commit: str | None = None
    release_tag: str | None = None
    binary_type: str | None = None
    storage: GlobalStorageConfig = Field(default_factory=lambda: GlobalStorageConfig(root_directory="./data"))
    http: HTTPConfig = HTTPConfig()
    log: LogConfig = LogConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    scheduler: SchedulerConfig | None = None
    # ocistore's own key: the Redis of the scaled topology (broker, event stream, locks).
    redis: str | None = None

    @field_validator("dist_spec_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("redis", mode="before")
    @classmethod
    def _redis_url(cls, value: Any) -> Any:
        return None if value is None else _redis(value)

    @property
    def redis_url(self) -> str | None:
        return self.redis

    @property
    def scrub(self) -> ScrubConfig:
        return self.extensions.scrub

    @property
    def metrics(self) -> MetricsConfig:
        return self.extensions.metrics

    def with_port(self, port: int) -> Config:
        return self.model_copy(update={"http": self.http.model_copy(update={"port": port})})


def parse_config(raw: Any) -> Config:
    """Build a Config from decoded JSON/YAML, raising ConfigError with the key and value."""
    if not isinstance(raw, dict):
        raise ConfigError("config: the file must hold an object")
    try:
        config = Config.model_validate(raw, context={"file": True})
        env_url = os.environ.get(REDIS_URL_ENV)
        if env_url:
            try:
                config = config.model_copy(update={"redis": _redis(env_url)})
            except ValueError as exc:
                raise ConfigError(f"{REDIS_URL_ENV}: {exc}") from None
    except ValidationError as exc:
        raise describe(exc) from None
    return config


def load_config(path: str | Path) -> Config:
    """Read a JSON or YAML file; decoding problems are ConfigErrors naming the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    is_yaml = p.suffix.lower() in (".yaml", ".yml")
    try:
        raw = yaml.safe_load(text) if is_yaml else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {'YAML' if is_yaml else 'JSON'}: {exc}") from None
    return parse_config(raw)


def json_schema() -> dict[str, Any]:
    """The config's JSON Schema (`ocistore schema`), keys as zot spells them."""
    return Config.model_json_schema(by_alias=True)
