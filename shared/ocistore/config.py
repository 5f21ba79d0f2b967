"""zot's configuration format, read unchanged (JSON or YAML), checked strictly.

Keys are matched case-insensitively, as zot's loader does.  Every key is either
understood, or refused with a message naming it: a misspelt `gcDelay` must never
silently fall back to a default on somebody's production registry.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .durations import parse_duration
from .wire import is_ascii_digits

REDIS_URL_ENV = "OCISTORE_REDIS_URL"

class ConfigError(ValueError):
    """A config problem, worded for the operator: which key, which value, what is wanted."""


@dataclass(frozen=True)
class StorageConfig:
    root_directory: str = "./data"
    dedupe: bool = True
    gc: bool = True
    gc_delay: float = 3600.0
    gc_interval: float = 3600.0
    commit: bool = False
    remote_cache: bool = False
    cache_driver: Mapping[str, Any] | None = None
    storage_driver: Mapping[str, Any] | None = None
    # ocistore's own: bounds on open upload sessions, and when an idle one is abandoned.
    max_uploads: int = 10000
    max_uploads_per_repository: int = 1000
    upload_idle_timeout: float = 900.0
    sub_paths: Mapping[str, StorageConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class HTTPConfig:
    """Where to listen, and the bounds every connection lives within (see the README's
    "Connection limits"): a client that sends nothing, trickles, or sends a huge header
    must not hold resources that other clients need."""

    address: str = "127.0.0.1"
    port: int = 5000
    max_header_bytes: int = 64 * 1024        # request line and headers together -> 431
    max_header_fields: int = 100             # header lines -> 431
    header_timeout: float = 10.0             # first byte of a request (or accept) to end of its headers
    body_idle_timeout: float = 60.0          # longest gap between body bytes
    write_timeout: float = 60.0              # longest stall of a response the client does not read
    keep_alive_timeout: float = 30.0         # idle time between requests on one connection
    max_requests_per_connection: int = 1000
    # None: half the file-descriptor limit (raised to its hard limit at start), at most 10,000.
    max_connections: int | None = None


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    output: str | None = None


@dataclass(frozen=True)
class ScrubConfig:
    enable: bool = False
    interval: float = 86400.0


@dataclass(frozen=True)
class Config:
    dist_spec_version: str = "1.1.0"
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    log: LogConfig = field(default_factory=LogConfig)
    scrub: ScrubConfig = field(default_factory=ScrubConfig)
    # ocistore's own key: the Redis of the scaled topology (broker, event stream, locks).
    redis_url: str | None = None

    def with_port(self, port: int) -> Config:
        return replace(self, http=replace(self.http, port=port))


# --- value parsers: each returns the parsed value or raises ValueError with the reason.

def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("expected true or false")


def _str(v: Any) -> str:
    if isinstance(v, str) and v:
        return v
    raise ValueError("expected a non-empty string")


def _duration(v: Any) -> float:
    if isinstance(v, str):
        return parse_duration(v)
    raise ValueError("expected a duration string such as 90s, 30m, 1h or 24h")


def _port(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected a port number")
    if isinstance(v, int) or (isinstance(v, str) and is_ascii_digits(v)):
        port = int(v)
        if 0 <= port <= 65535:
            return port
    raise ValueError("expected a port number from 0 to 65535")


def _positive_duration(v: Any) -> float:
    seconds = _duration(v)
    if seconds > 0:
        return seconds
    raise ValueError("expected a duration above zero, such as 10s")


def _count(low: int, high: int) -> Callable[[Any], int]:
    """An integer within [low, high], given as a number or a string of ASCII digits."""
    def parse(v: Any) -> int:
        if not isinstance(v, bool) and (isinstance(v, int) or (
                isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 12)):
            n = int(v)
            if low <= n <= high:
                return n
        raise ValueError(f"expected a whole number from {low} to {high}")
    return parse


def _level(v: Any) -> str:
    levels = ("debug", "info", "warn", "warning", "error", "fatal", "panic")
    if isinstance(v, str) and v.lower() in levels:
        return v.lower()
    raise ValueError(f"expected one of {', '.join(levels)}")


def _mapping(v: Any) -> Mapping[str, Any]:
    if isinstance(v, Mapping):
        return dict(v)
    raise ValueError("expected an object")


_CACHE_KEYS = {
    "embedded": {"name", "rootdir"},
    "boltdb": {"name", "rootdir"},
    "redis": {"name", "url", "keyprefix"},
    "dynamodb": {"name", "endpoint", "region", "cachetablename", "repometatablename", "imagemetatablename",
                 "repoblobsinfotablename", "userdatatablename", "apikeytablename", "versiontablename"},
}
_CACHE_REQUIRED = {"redis": ("url",), "dynamodb": ("cachetablename",)}


def _cache_driver(v: Any) -> Mapping[str, Any]:
    m = {str(k).lower(): val for k, val in _mapping(v).items()}
    name = m.get("name")
    if name not in _CACHE_KEYS:
        raise ValueError("cacheDriver.name must be embedded, boltdb, redis or dynamodb")
    unknown = set(m) - _CACHE_KEYS[name]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} for a {name} cacheDriver")
    for key in _CACHE_REQUIRED.get(name, ()):
        if not isinstance(m.get(key), str) or not m[key]:
            raise ValueError(f"a {name} cacheDriver needs {key}")
    return m


def _storage_driver(v: Any) -> Mapping[str, Any]:
    m = {str(k).lower(): val for k, val in _mapping(v).items()}
    if m.get("name") != "s3":
        raise ValueError("storageDriver.name must be s3 (local disk needs no storageDriver)")
    from .storage.s3 import S3Params

    S3Params.parse(m)
    return m


Schema = dict[str, tuple[str, Callable[[Any], Any]]]

_STORAGE_KEYS: Schema = {
    "rootdirectory": ("root_directory", _str),
    "dedupe": ("dedupe", _bool),
    "gc": ("gc", _bool),
    "gcdelay": ("gc_delay", _duration),
    "gcinterval": ("gc_interval", _duration),
    "commit": ("commit", _bool),
    "remotecache": ("remote_cache", _bool),
    "cachedriver": ("cache_driver", _cache_driver),
    "storagedriver": ("storage_driver", _storage_driver),
    "maxuploads": ("max_uploads", _count(1, 1 << 31)),
    "maxuploadsperrepository": ("max_uploads_per_repository", _count(1, 1 << 31)),
    "uploadidletimeout": ("upload_idle_timeout", _duration),
}
_HTTP_KEYS: Schema = {
    "address": ("address", _str),
    "port": ("port", _port),
    # zot's names.  Go applies them to a whole request or response; ocistore applies them to
    # inactivity, so a multi-GiB layer on a slow link is never cut while bytes still flow.
    "readtimeout": ("read_timeout", _positive_duration),
    "writetimeout": ("write_timeout", _positive_duration),
    # ocistore's own.
    "maxheaderbytes": ("max_header_bytes", _count(1024, 16 << 20)),
    "maxheaderfields": ("max_header_fields", _count(8, 10_000)),
    "headertimeout": ("header_timeout", _positive_duration),
    "bodyidletimeout": ("body_idle_timeout", _positive_duration),
    "keepalivetimeout": ("keep_alive_timeout", _positive_duration),
    "maxrequestsperconnection": ("max_requests_per_connection", _count(1, 1 << 31)),
    "maxconnections": ("max_connections", _count(1, 1 << 20)),
}
_LOG_KEYS: Schema = {"level": ("level", _level), "output": ("output", _str)}
_SCRUB_KEYS: Schema = {"enable": ("enable", _bool), "interval": ("interval", _duration)}

# zot keys that ocistore deliberately does not offer: refused by name, never ignored.
_UNSUPPORTED = {
    "http.tls": "TLS: terminate it in a reverse proxy in front of ocistore",
    "http.auth": "authentication: put an authenticating proxy in front of ocistore",
    "http.accesscontrol": "access control: put an authenticating proxy in front of ocistore",
    "http.realm": "authentication realm (ocistore has no built-in authentication)",
    "http.ratelimit": "rate limiting",
    "http.compat": "the compat setting",
    "http.externalurl": "externalUrl",
    "log.audit": "audit logs",
    "storage.retention": "retention policies",
}


def _walk(raw: Any, schema: Schema, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'config'}: expected an object, got {raw!r}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        lk = str(key).lower()
        dotted = f"{where}.{key}" if where else str(key)
        full = f"{where.lower()}.{lk}" if where else lk
        if lk not in schema:
            reason = _UNSUPPORTED.get(full)
            if reason:
                raise ConfigError(f"{dotted}: not supported by ocistore ({reason})")
            raise ConfigError(
                f"{dotted}: unknown key (known here: {', '.join(sorted(schema))})"
            )
        attr, parse = schema[lk]
        try:
            out[attr] = parse(value)
        except ValueError as exc:
            raise ConfigError(f"{dotted}: invalid value {value!r}: {exc}") from None
    return out


def _storage(raw: Any, where: str) -> StorageConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected an object, got {raw!r}")
    sub_raw = None
    plain = {}
    for k, v in raw.items():
        if str(k).lower() == "subpaths":
            if where != "storage":
                raise ConfigError(f"{where}.{k}: subPaths cannot be nested")
            sub_raw = v
        else:
            plain[k] = v
    values = _walk(plain, _STORAGE_KEYS, where)
    if "root_directory" not in values:
        raise ConfigError(f"{where}.rootDirectory: required")
    remote = values.get("remote_cache", False)
    cache_name = (values.get("cache_driver") or {}).get("name", "embedded")
    if remote and cache_name not in ("redis", "dynamodb"):
        raise ConfigError(f"{where}.remoteCache: true needs a cacheDriver named redis or dynamodb")
    if not remote and cache_name in ("redis", "dynamodb"):
        raise ConfigError(f"{where}.cacheDriver: a {cache_name} cache is remote: set {where}.remoteCache to true")
    subs: dict[str, StorageConfig] = {}
    if sub_raw is not None:
        if not isinstance(sub_raw, Mapping):
            raise ConfigError(f"{where}.subPaths: expected an object keyed by route, got {sub_raw!r}")
        for route, sub in sub_raw.items():
            route_s = str(route)
            if not route_s.startswith("/") or not _COMPONENT.fullmatch(route_s[1:]):
                raise ConfigError(
                    f"{where}.subPaths: invalid route {route_s!r}: use '/' and one name component, e.g. '/infra'"
                )
            subs[route_s] = _storage(sub, f"{where}.subPaths.{route_s}")
    storage = StorageConfig(**values, sub_paths=subs)
    if subs:
        _check_roots(storage)
    return storage


_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")  # fullmatch: no trailing newline


def store_location(cfg: StorageConfig) -> tuple[str, str]:
    """(where, path) of a store's data: two stores may not share or nest them."""
    driver = {str(k).lower(): v for k, v in (cfg.storage_driver or {}).items()}
    if driver.get("name") == "s3":
        where = f"s3://{driver.get('regionendpoint') or ''}/{driver.get('bucket')}"
        return where, "/" + str(driver.get("rootdirectory") or "").strip("/")
    return "local", os.path.abspath(cfg.root_directory)


def _check_roots(storage: StorageConfig) -> None:
    stores = [("storage", storage)] + [(f"storage.subPaths.{r}", s) for r, s in storage.sub_paths.items()]
    for i, (name_a, a) in enumerate(stores):
        for name_b, b in stores[i + 1:]:
            (where_a, path_a), (where_b, path_b) = store_location(a), store_location(b)
            if where_a != where_b:
                continue
            pa, pb = path_a.rstrip("/") + "/", path_b.rstrip("/") + "/"
            if pa.startswith(pb) or pb.startswith(pa):
                relation = "the same root" if pa == pb else "nested roots"
                raise ConfigError(f"{name_a} ({path_a}) and {name_b} ({path_b}) have {relation}: "
                                  "each store needs a root of its own")


def parse_config(raw: Any) -> Config:
    """Build a Config from decoded JSON/YAML, raising ConfigError with the key and value."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config: the file must hold an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        lk = str(key).lower()
        if lk == "distspecversion":
            values["dist_spec_version"] = _str(value) if isinstance(value, str) else str(value)
        elif lk == "storage":
            values["storage"] = _storage(value, "storage")
        elif lk == "http":
            values["http"] = _http(value)
        elif lk == "log":
            values["log"] = LogConfig(**_walk(value, _LOG_KEYS, "log"))
        elif lk == "extensions":
            values["scrub"] = _extensions(value)
        elif lk == "redis":
            values["redis_url"] = _redis_url(value)
        else:
            raise ConfigError(
                f"{key}: unknown top-level key (known: distSpecVersion, storage, http, log, extensions, redis)"
            )
    env_url = os.environ.get(REDIS_URL_ENV)
    if env_url:
        values["redis_url"] = _redis_url(env_url, REDIS_URL_ENV)
    return Config(**values)


def _http(raw: Any) -> HTTPConfig:
    values = _walk(raw, _HTTP_KEYS, "http")
    # zot's readTimeout bounds reading a request: here the header and the body gaps, unless
    # those have a value of their own.
    read = values.pop("read_timeout", None)
    if read is not None:
        values.setdefault("header_timeout", read)
        values.setdefault("body_idle_timeout", read)
    return HTTPConfig(**values)


def _redis_url(value: Any, where: str = "redis") -> str:
    if isinstance(value, Mapping) and set(value) == {"url"}:
        value = value["url"]
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{where}: invalid value {value!r}: expected a URL such as redis://127.0.0.1:6379/0")
    return value


def _extensions(raw: Any) -> ScrubConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"extensions: expected an object, got {raw!r}")
    scrub = ScrubConfig()
    for key, value in raw.items():
        if str(key).lower() != "scrub":
            raise ConfigError(f"extensions.{key}: not supported by ocistore (only scrub is)")
        # As zot does: a scrub block without `enable` means scrub on.
        scrub = ScrubConfig(**{"enable": True, **_walk(value, _SCRUB_KEYS, f"extensions.{key}")})
    return scrub


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

