"""zot's `storage.retention`: which tags and untagged manifests GC may remove.

The models only; what they mean is `ocistore.retention`'s. Globs and patterns are checked
here, so a bad one fails `verify`, not a GC pass.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from ..globs import check_glob
from .base import Block, Duration, Flag, Whole


class KeepUntagged(Block):
    pulled_within: Duration | None = None
    pushed_within: Duration | None = None
    most_recently_pushed_count: Whole = 0
    most_recently_pulled_count: Whole = 0


class KeepTags(KeepUntagged):
    """Tags matching `patterns` (unanchored regexes, as Go's MatchString; none: every tag)
    are kept if any of the rules keeps them."""

    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"{p!r} is no valid regular expression: {exc}") from None
        return patterns


class RetentionPolicy(Block):
    repositories: list[str]
    delete_referrers: Flag = False
    # zot: true unless given (root.go applyDefaultValues).
    delete_untagged: Flag = True
    keep_tags: list[KeepTags] = Field(default_factory=list)
    keep_untagged: KeepUntagged | None = None

    @field_validator("repositories")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        return [check_glob(g) for g in globs]


class Retention(Block):
    dry_run: Flag = False
    # zot: the store's gcDelay when not given (and gc on); see StorageConfig.
    delay: Duration | None = None
    policies: list[RetentionPolicy] = Field(default_factory=list)
