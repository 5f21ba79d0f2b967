"""The `extensions` block: scrub and metrics are offered; any other extension is accepted
only when disabled (`"enable": false`), and refused by name when enabled.

zot's empty-block rule is kept: viper drops an empty map, so `"search": {}` counts as absent,
except when every extension block is empty, where zot enables each of them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import ConfigDict, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .base import Block, Duration, Flag, key_error, settle

log = logging.getLogger("ocistore.config")

SCRUB_FLOOR = 7200.0  # zot raises a shorter scrub interval to two hours, with a warning
_OTHERS = {
    "search": "search and CVE scanning",
    "sync": "mirroring other registries",
    "ui": "zot's web UI",
    "trust": "signature verification",
    "lint": "manifest linting",
    "events": "event sinks (ocistore's own events go through Redis)",
    "mgmt": "zot's management API",
    "apikey": "API keys",
}


class ScrubConfig(Block):
    # As zot does: a scrub block without `enable` means scrub on.
    enable: Flag = True
    interval: Duration = 86400.0
    # ocistore's own: the floor of `interval`, zot's two hours unless lowered (a small store,
    # a test rig); zot's configs never carry it.
    min_interval: Duration = SCRUB_FLOOR

    @model_validator(mode="after")
    def _floor(self) -> ScrubConfig:
        if self.interval < self.min_interval:
            log.warning("extensions.scrub.interval is below minInterval (%gs): %gs is used, as zot does",
                        self.min_interval, self.min_interval)
            settle(self, interval=self.min_interval)
        return self


class Prometheus(Block):
    path: str = "/metrics"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = [p for p in value.split("/") if p]
        clean = "/" + "/".join(parts)
        if value != clean or value in ("/", "/v2") or any(p in (".", "..") for p in parts):
            raise ValueError("must be a clean absolute path other than / and /v2, such as /metrics")
        return value


class MetricsConfig(Block):
    enable: Flag = True
    prometheus: Prometheus = Prometheus()


class Disabled(Block):
    """An extension ocistore does not offer, accepted while switched off."""

    model_config = ConfigDict(extra="allow", frozen=True, alias_generator=to_camel, populate_by_name=True)
    enable: Flag | None = None

    @model_validator(mode="before")
    @classmethod
    def _zot_keys(cls, raw: Any) -> Any:
        """Whatever zot's extension takes is its own business while it is off: only `enable` is read."""
        if not isinstance(raw, dict):
            return raw
        return {("enable" if str(k).lower() == "enable" else k): v for k, v in raw.items()}


class ExtensionsConfig(Block):
    scrub: ScrubConfig = ScrubConfig(enable=False)
    # zot serves no metrics without the block; ocistore always serves them, at this path.
    metrics: MetricsConfig = MetricsConfig()
    search: Disabled | None = None
    sync: Disabled | None = None
    ui: Disabled | None = None
    trust: Disabled | None = None
    lint: Disabled | None = None
    events: Disabled | None = None
    mgmt: Disabled | None = None
    apikey: Disabled | None = None
    REFUSED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _empty_blocks(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not raw:
            return raw
        if all(v == {} for v in raw.values()):
            return raw  # zot enables every one of them
        return {k: v for k, v in raw.items() if v != {}}

    @model_validator(mode="after")
    def _offered(self) -> ExtensionsConfig:
        for name, what in _OTHERS.items():
            block = getattr(self, name)
            # A present block enables its extension unless it says otherwise (zot: lint and
            # events default to off).
            on_unless_said = name not in ("lint", "events")
            if block is not None and (block.enable is True or (block.enable is None and on_unless_said)):
                raise key_error(name, f"not supported by ocistore ({what}): set \"enable\": false or remove it")
        return self

