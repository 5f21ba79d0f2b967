"""Which tags and untagged manifests a GC pass may remove: zot's `storage.retention`.

Pure decisions over a repository's index and statistics; `ocistore.gc` applies them under
the repository's lock. zot's rules (pkg/retention), kept as they are:
- the first policy whose `repositories` glob matches the repository applies; none: every
  tag is kept, untagged manifests are removed, referrers of a gone subject are kept;
- with `keepTags`, each tag belongs to the first entry whose `patterns` (unanchored
  regexes; none: every tag) it matches; a tag matching none is removed; within an
  entry, a tag is kept if any of its rules keeps it, or by its pattern if it has none;
- a tag with no statistics at all is kept.

ocistore adds one rule of its own: a tag pushed within the retention delay is kept, as GC
keeps every young manifest, so a tag a client was just told is stored does not vanish
before the client has used it, whatever the rules say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .config.retention import KeepTags, KeepUntagged, Retention, RetentionPolicy
from .globs import glob_match
from .statistics import RefTimes


@dataclass(frozen=True)
class Candidate:
    ref: str           # a tag, or the digest of an untagged manifest
    digest: str
    pushed: float      # 0.0: unknown
    pulled: float


@dataclass(frozen=True)
class Decision:
    """One verdict, with the rule that made it (zot's reasons, so logs read alike)."""

    ref: str
    digest: str
    keep: bool
    reason: str


def policy_for(retention: Retention, repo: str) -> RetentionPolicy | None:
    for policy in retention.policies:
        if any(glob_match(pattern, repo) for pattern in policy.repositories):
            return policy
    return None


def _matches(tag: str, patterns: list[str]) -> bool:
    return not patterns or any(re.search(p, tag) for p in patterns)


def _rules(rules: KeepUntagged, group: list[Candidate], now: float) -> dict[str, str]:
    """ref -> the rule that keeps it, for the candidates any rule keeps (the rules are ORed)."""
    kept: dict[str, str] = {}
    if rules.most_recently_pulled_count:
        for c in sorted(group, key=lambda c: -c.pulled)[:rules.most_recently_pulled_count]:
            kept.setdefault(c.ref, f"mostRecentlyPulledCount:{rules.most_recently_pulled_count}")
    if rules.most_recently_pushed_count:
        for c in sorted(group, key=lambda c: -c.pushed)[:rules.most_recently_pushed_count]:
            kept.setdefault(c.ref, f"mostRecentlyPushedCount:{rules.most_recently_pushed_count}")
    if rules.pulled_within is not None:
        since = now - rules.pulled_within
        # zot keeps what was pushed within the window too: an image younger than the window
        # has had no chance to be pulled within it.
        for c in group:
            if c.pulled > since or c.pushed > since:
                kept.setdefault(c.ref, f"pulledWithin:{rules.pulled_within:g}s")
    if rules.pushed_within is not None:
        since = now - rules.pushed_within
        for c in group:
            if c.pushed > since:
                kept.setdefault(c.ref, f"pushedWithin:{rules.pushed_within:g}s")
    return kept


def _has_rules(rules: KeepUntagged) -> bool:
    return bool(rules.most_recently_pulled_count or rules.most_recently_pushed_count
                or rules.pulled_within is not None or rules.pushed_within is not None)


def decide_tags(policy: RetentionPolicy, tags: Iterable[tuple[str, str, RefTimes | None]],
                now: float, delay: float) -> list[Decision]:
    """A verdict for every tag of (tag, digest, statistics); only with `keepTags`."""
    decisions: list[Decision] = []
    groups: dict[int, list[Candidate]] = {}
    for tag, digest, times in tags:
        if times is None:
            decisions.append(Decision(tag, digest, True, "tag statistics not found"))
            continue
        c = Candidate(tag, digest, times.pushed or 0.0, times.pulled or 0.0)
        if c.pushed > now - delay:
            decisions.append(Decision(tag, digest, True, "pushed within the retention delay"))
            continue
        entry = next((i for i, k in enumerate(policy.keep_tags) if _matches(tag, k.patterns)), None)
        if entry is None:
            decisions.append(Decision(tag, digest, False, "didn't meet any tag 'patterns' rules"))
            continue
        groups.setdefault(entry, []).append(c)
    for entry, group in groups.items():
        rules: KeepTags = policy.keep_tags[entry]
        if not _has_rules(rules):
            decisions.extend(Decision(c.ref, c.digest, True, "retained by patterns policy") for c in group)
            continue
        kept = _rules(rules, group, now)
        decisions.extend(
            Decision(c.ref, c.digest, True, f"retained by {kept[c.ref]} policy") if c.ref in kept
            else Decision(c.ref, c.digest, False, "didn't meet any tag retention rule")
            for c in group)
    return decisions


def kept_untagged(rules: KeepUntagged, candidates: list[Candidate], now: float) -> dict[str, str]:
    """digest -> why `keepUntagged` keeps it; an entry with no rules keeps every one."""
    if not _has_rules(rules):
        return {c.digest: "keepUntagged" for c in candidates}
    kept = _rules(rules, candidates, now)
    return {c.digest: f"keepUntagged {kept[c.ref]}" for c in candidates if c.ref in kept}
