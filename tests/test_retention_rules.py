"""zot's retention rules as a pure function, and its doublestar globs: each case is one a
zot operator relies on (a config moved from zot must keep and remove the same tags)."""

from __future__ import annotations

import pytest

from ocistore.config.retention import KeepTags, KeepUntagged, Retention, RetentionPolicy
from ocistore.globs import glob_match
from ocistore.retention import Candidate, decide_tags, kept_untagged, policy_for
from ocistore.statistics import RefTimes, RepoStatistics, merge

NOW = 1_000_000_000.0
DAY = 86400.0


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("**", "a/b/c", True), ("infra/*", "infra/x", True), ("infra/*", "infra/x/y", False),
    ("tmp/**", "tmp", True), ("tmp/**", "tmp/a/b", True), ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True),
    ("{prod,stage}/*", "stage/app", True), ("{prod,stage}/*", "dev/app", False),
    ("[a-c]pp", "bpp", True), ("[!a]pp", "app", False), ("a?c", "abc", True), ("a?c", "a/c", False),
    ("*", "a/b", False), ("**/x", "x", True), ("**/x", "a/b/x", True), ("a\\*", "a*", True), ("a\\*", "ab", False),
    ("team-*/**", "team-a/svc/api", True), ("team-*/**", "teams/svc", False),
])
def test_repository_globs_match_as_doublestar_does(pattern: str, name: str, matches: bool) -> None:
    assert glob_match(pattern, name) is matches


def policy(**keys: object) -> RetentionPolicy:
    return Retention.model_validate({"policies": [{"repositories": ["**"], **keys}]}).policies[0]


def tag(name: str, pushed_days_ago: float, pulled_days_ago: float | None = None) -> tuple[str, str, RefTimes]:
    pulled = None if pulled_days_ago is None else NOW - pulled_days_ago * DAY
    return name, f"sha256:{name}", RefTimes(NOW - pushed_days_ago * DAY, pulled)


def kept(decisions: list) -> set[str]:  # type: ignore[type-arg]
    return {d.ref for d in decisions if d.keep}


def test_the_first_matching_policy_applies() -> None:
    retention = Retention.model_validate({"policies": [
        {"repositories": ["infra/*"], "deleteUntagged": False}, {"repositories": ["**"], "deleteReferrers": True}]})
    assert policy_for(retention, "infra/app").delete_untagged is False  # type: ignore[union-attr]
    assert policy_for(retention, "infra/app/x").delete_referrers is True  # type: ignore[union-attr]
    assert policy_for(Retention(), "any") is None


def test_a_tag_matching_no_patterns_goes_and_one_matching_a_ruleless_entry_stays() -> None:
    p = policy(keepTags=[{"patterns": ["^v2"]}])
    decisions = decide_tags(p, [tag("v2.1", 9), tag("latest", 9)], NOW, 3600)
    assert kept(decisions) == {"v2.1"}
    assert {d.reason for d in decisions if not d.keep} == {"didn't meet any tag 'patterns' rules"}


def test_rules_are_ored_within_the_first_entry_a_tag_matches() -> None:
    p = policy(keepTags=[{"patterns": ["^v"], "mostRecentlyPushedCount": 1, "pulledWithin": "48h"},
                         {"patterns": [".*"]}])
    tags = [tag("v1", 30, pulled_days_ago=1), tag("v2", 20), tag("v3", 10), tag("dev", 50)]
    decisions = decide_tags(p, tags, NOW, 3600)
    # v3: most recently pushed; v1: pulled within two days; v2: neither; dev: the second entry.
    assert kept(decisions) == {"v1", "v3", "dev"}
    assert [d.reason for d in decisions if d.ref == "v2"] == ["didn't meet any tag retention rule"]


def test_pulled_within_also_keeps_what_was_pushed_within_the_window() -> None:
    p = policy(keepTags=[{"pulledWithin": "72h"}])
    assert kept(decide_tags(p, [tag("new", 2), tag("old", 5), tag("used", 5, pulled_days_ago=2)], NOW, 0)) == {
        "new", "used"}


def test_most_recently_pulled_counts_pulls_and_never_pulled_tags_rank_last() -> None:
    p = policy(keepTags=[{"mostRecentlyPulledCount": 2}])
    tags = [tag("a", 9, 5), tag("b", 9, 1), tag("c", 9), tag("d", 9, 3)]
    assert kept(decide_tags(p, tags, NOW, 0)) == {"b", "d"}


def test_tags_without_statistics_and_tags_younger_than_the_delay_are_kept() -> None:
    p = policy(keepTags=[{"patterns": ["^release-"]}])
    decisions = decide_tags(p, [("unknown", "sha256:u", None), tag("fresh", 0.001), tag("old", 3)], NOW, 3600)
    assert kept(decisions) == {"unknown", "fresh"}
    assert {d.ref: d.reason for d in decisions if d.keep} == {
        "unknown": "tag statistics not found", "fresh": "pushed within the retention delay"}


def test_keep_untagged_rules_and_an_empty_entry_keeps_every_untagged_manifest() -> None:
    candidates = [Candidate(d, d, NOW - age * DAY, 0.0) for d, age in (("sha256:a", 1), ("sha256:b", 40))]
    assert set(kept_untagged(KeepUntagged.model_validate({"pushedWithin": "720h"}), candidates, NOW)) == {"sha256:a"}
    assert set(kept_untagged(KeepUntagged(), candidates, NOW)) == {"sha256:a", "sha256:b"}


def test_statistics_merge_keeps_the_later_time_and_tags_take_their_manifests_pulls() -> None:
    refs = {"v1": (10.0, 0.0), "sha256:x": (10.0, 50.0)}
    assert merge(refs, {"v1": (5.0, 0.0), "sha256:x": (20.0, 40.0)})
    assert refs == {"v1": (10.0, 0.0), "sha256:x": (20.0, 50.0)}
    assert not merge(refs, {"v1": (1.0, 0.0)})
    stats = RepoStatistics(refs)
    assert stats.of_tag("v1", "sha256:x") == RefTimes(10.0, 50.0)
    assert stats.of_tag("v2", "sha256:y") is None
    assert KeepTags().patterns == []
