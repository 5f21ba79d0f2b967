"""Redis addresses as zot writes them, turned into URLs redis-py understands.

zot reads a redis `url` with go-redis's `ParseURL`, whose query options (`dial_timeout=3`,
`read_timeout=6s`, `pool_size=10`) are not redis-py's: handed to redis-py unchanged they
pass as unknown connection arguments and fail at the first command, so every upload would
answer 500. They are translated here, at `verify`, or refused by name. A plain number is
seconds in a go-redis URL; as a separate key in the block it is nanoseconds (Go's
`time.Duration`), so write `"5s"` there.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, model_validator

from ..durations import parse_duration
from .base import Driver, key_error

# go-redis option -> redis-py URL option (None: tunes go-redis's own pool, nothing to carry over).
_GO_OPTIONS: dict[str, str | None] = {
    "db": "db",
    "dial_timeout": "socket_connect_timeout",
    "read_timeout": "socket_timeout",
    "write_timeout": "socket_timeout",
    "pool_size": "max_connections",
    "max_active_conns": "max_connections",
    "client_name": "client_name",
    "skip_verify": "ssl_cert_reqs",
    # RESP2 serves every command ocistore sends; its own retries and circuit breaker replace go-redis's.
    "protocol": None, "max_retries": None, "min_retry_backoff": None, "max_retry_backoff": None,
    "pool_fifo": None, "pool_timeout": None, "min_idle_conns": None, "max_idle_conns": None,
    "max_concurrent_dials": None, "conn_max_idle_time": None, "idle_timeout": None,
    "conn_max_lifetime": None, "max_conn_age": None, "conn_max_lifetime_jitter": None,
}
# redis-py's own URL options, accepted as they are.
_PY_OPTIONS = frozenset({"db", "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout",
                         "max_connections", "health_check_interval", "ssl_check_hostname", "ssl_cert_reqs",
                         "client_name"})
_SECONDS = frozenset({"socket_connect_timeout", "socket_timeout"})


def _go_seconds(value: str, bare_unit: float) -> float | None:
    """A go-redis duration: a bare number in `bare_unit` seconds, else a Go duration; <=0: none."""
    text = value.strip()
    try:
        seconds = float(text) * bare_unit if text.lstrip("-").isdigit() else parse_duration(text)
    except ValueError:
        raise ValueError(f"{value!r} is no duration (use e.g. 5s)") from None
    return seconds if seconds > 0 else None


def check_redis_url(url: str) -> str:
    """The URL with go-redis options translated to redis-py's; ValueError naming what cannot be."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{_safe(url)!r} is no Redis URL (redis://host:6379/0, rediss://… or unix://…)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "addr" for k, _ in query):
        raise ValueError("a Redis Cluster URL (addr=…): Redis Cluster is not supported; use one Redis server")
    out: dict[str, str] = {}
    for key, value in query:
        if key in _PY_OPTIONS and key not in _GO_OPTIONS:
            out[key] = value
            continue
        if key not in _GO_OPTIONS and key not in _PY_OPTIONS:
            raise ValueError(f"unknown Redis URL option {key!r} (go-redis options: {', '.join(sorted(_GO_OPTIONS))})")
        target = _GO_OPTIONS.get(key, key)
        if target is None or value == "":
            continue
        if target in _SECONDS:
            seconds = _go_seconds(value, 1.0)
            if seconds is not None:
                out[target] = f"{max(seconds, float(out.get(target, 0))):g}"
        elif target == "ssl_cert_reqs":
            if parts.scheme == "rediss" and value.lower() in ("1", "t", "true"):
                out[target] = "none"
        elif target in ("db", "max_connections"):
            if not value.isdigit():
                raise ValueError(f"option {key}={value!r}: expected a whole number")
            if target != "max_connections" or int(value) > 0:
                out[target] = value
        else:
            out[target] = value
    return urlunsplit(parts._replace(query=urlencode(out)))


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":<redacted>@")))
    return url


def _addresses(value: Any) -> Any:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    return value


class RedisOptions(Driver):
    """go-redis's universal options, given as keys of the block instead of a `url` (zot's
    `config-redis-all-options.json`). Durations given as bare numbers are nanoseconds, as in Go."""

    addr: Annotated[list[str], BeforeValidator(_addresses)] = Field(default_factory=list)
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None
    dial_timeout: str | int | float | None = None
    read_timeout: str | int | float | None = None
    write_timeout: str | int | float | None = None
    pool_size: int | None = None
    max_active_conns: int | None = None
    master_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    # go-redis tuning with no redis-py counterpart: accepted, carried nowhere.
    protocol: int | None = None
    max_retries: int | None = None
    min_retry_backoff: str | int | None = None
    max_retry_backoff: str | int | None = None
    context_timeout_enabled: bool | None = None
    pool_fifo: bool | None = None
    pool_timeout: str | int | None = None
    min_idle_conns: int | None = None
    max_idle_conns: int | None = None
    conn_max_idle_time: str | int | None = None
    conn_max_lifetime: str | int | None = None
    max_redirects: int | None = None
    read_only: bool | None = None
    route_by_latency: bool | None = None
    route_randomly: bool | None = None
    disable_identity: bool | None = None
    identity_suffix: str | None = None
    unstable_resp3: bool | None = None

    @model_validator(mode="after")
    def _one_server(self) -> RedisOptions:
        if self.master_name:
            raise key_error("master_name", "Redis Sentinel is not supported; give the url of one Redis server")
        if len(self.addr) > 1:
            raise key_error("addr", "several addresses make a Redis Cluster, which is not supported; give one")
        return self

    def options_url(self) -> str:
        """These options as a redis-py URL (go-redis's default address when none is given)."""
        host = self.addr[0] if self.addr else "localhost:6379"
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        query: dict[str, str] = {}
        for key, target in (("dial_timeout", "socket_connect_timeout"), ("read_timeout", "socket_timeout"),
                            ("write_timeout", "socket_timeout")):
            value = getattr(self, key)
            if value is not None:
                seconds = _go_seconds(str(value), 1e-9)
                if seconds is not None:
                    query[target] = f"{max(seconds, float(query.get(target, 0))):g}"
        connections = self.max_active_conns or self.pool_size
        if connections:
            query["max_connections"] = str(connections)
        if self.client_name:
            query["client_name"] = self.client_name
        return urlunsplit(("redis", f"{auth}{host}", f"/{self.db}", urlencode(query), ""))
