"""What every block of the config shares: zot's key rules, durations, readable errors.

zot reads its config through viper, so keys match case-insensitively. Unlike zot, a key
ocistore does not know is refused, with the nearest known key suggested: a misspelt
`gcDelay` must never fall back to a default on somebody's production registry.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ..durations import parse_duration

# Keys whose values never appear in a message (an error, a log line, `ocistore verify`).
SECRET_KEYS = re.compile(r"(?i)(password|secret|token|credential|accesskey|apikey|key_?file|passphrase)")


class ConfigError(ValueError):
    """A config problem, worded for the operator: which key, which value, what is wanted."""


class Block(BaseModel):
    """One block of the config. Keys are zot's camelCase names, matched case-insensitively.

    `REFUSED` names keys of this block that zot knows and ocistore deliberately does not
    offer, with the reason, so they are refused by name rather than as unknown.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)
    REFUSED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _zot_keys(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        known = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            known[alias.lower()] = alias
            known[name.lower()] = alias
        refused = {k.lower(): why for k, why in cls.REFUSED.items()}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            low = str(key).lower()
            if low in refused:
                raise key_error(str(key), f"not supported by ocistore ({refused[low]})")
            found = known.get(low)
            if found is None:
                raise key_error(str(key), _unknown(str(key), sorted(set(known.values()))))
            alias = found
            if alias in out:
                raise key_error(str(key), "given twice (keys are case-insensitive)")
            out[alias] = value
        return out


def key_error(key: str, reason: str) -> PydanticCustomError:
    """A problem with a key itself (unknown, refused, repeated), reported at that key's path."""
    return PydanticCustomError("config_key", "{key}: {reason}", {"key": key, "reason": reason})


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    if close:
        suggestion = next(k for k in known if k.lower() == close[0])
        return f"unknown key; did you mean {suggestion}?"
    return f"unknown key (known here: {', '.join(known)})"


def _duration(value: Any, info: ValidationInfo) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if not from_file(info) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # seconds, from code; in a file zot would read a bare number as nanoseconds
    raise ValueError("expected a duration string such as 90s, 30m, 1h or 24h")


def from_file(info: ValidationInfo) -> bool:
    """Whether a config file is being read (zot's rules), rather than a model built in code."""
    return isinstance(info.context, dict) and bool(info.context.get("file"))


# zot decodes weakly (viper's WeaklyTypedInput): "true" is a boolean there, "8080" a number.
_TRUE = frozenset({"1", "t", "true"})
_FALSE = frozenset({"0", "f", "false"})


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError("expected true or false")


def _whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    raise ValueError("expected a whole number")


def settle(model: BaseModel, **values: Any) -> None:
    """Set values an after-validator derives (zot's defaults that depend on other keys) on a
    frozen model, keeping which keys were given."""
    for key, value in values.items():
        object.__setattr__(model, key, value)


class Driver(Block):
    """A free-form zot map (`storageDriver`, `cacheDriver`): its keys are plain lowercase
    names, as zot passes them on, still matched case-insensitively."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=None, populate_by_name=True)


# A Go duration written as zot writes it ("90s", "1h30m"), in seconds.
Duration = Annotated[float, BeforeValidator(_duration)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Whole = Annotated[int, BeforeValidator(_whole)]


def describe(exc: ValidationError) -> ConfigError:
    """One line per problem: the key path as the config spells it, the value, the reason."""
    lines = []
    for err in exc.errors(include_url=False):
        path = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "config_key":
            ctx = err.get("ctx") or {}
            path.append(str(ctx.get("key")))
            message = str(ctx.get("reason"))
        where = ".".join(path) or "config"
        if err["type"] == "missing":
            lines.append(f"{where}: required")
        elif err["type"] == "config_key" or isinstance(err.get("input"), dict | list) or "input" not in err:
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where}: invalid value {redact(where, err['input'])!r}: {message}")
    return ConfigError("\n".join(lines))


def _is_union_tag(part: object) -> bool:
    """pydantic's own path parts (a function validator, a union member): not config keys."""
    return isinstance(part, str) and (part.startswith(("function-", "tagged-union[")) or "[" in part
                                      or part in UNION_TAGS)


# The tags of the cacheDriver union, which pydantic puts in an error's path.
UNION_TAGS = frozenset({"embedded", "boltdb", "dynamodb", "cache-redis"})
_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")


def redact(where: str, value: Any) -> Any:
    if SECRET_KEYS.search(where.rsplit(".", 1)[-1]):
        return "<redacted>"
    return _URL_PASSWORD.sub(r"\1<redacted>@", value) if isinstance(value, str) else value
