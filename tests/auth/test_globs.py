"""zot's repository globs (doublestar v4's Match), case by case from its documentation."""

from __future__ import annotations

import pytest

from ocistore.globs import check_glob, compile_glob

CASES = [
    ("*", "a", True),
    ("*", "a/b", False),                 # `*` stays within a component
    ("**", "a/b/c", True),
    ("a/**", "a", True),                 # a trailing /** matches the directory itself
    ("a/**", "a/b/c", True),
    ("a/**", "ab", False),
    ("**/b", "b", True),
    ("**/b", "x/y/b", True),
    ("**/b", "xb", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a**", "abc", True),                # not a whole component: a single star
    ("a**", "a/b", False),
    ("prod/*", "prod/app", True),
    ("prod/*", "prod/app/x", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[a-c]x", "bx", True),
    ("[!a-c]x", "dx", True),
    ("[^a-c]x", "ax", False),
    ("[\\-]x", "-x", True),
    ("{a,b}/*", "b/c", True),
    ("{a,b/**}", "b/c/d", True),
    ("{a,{b,c}}d", "cd", True),
    ("{a,b}", "c", False),
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("infra/*", "infra/app", True),
    ("repos2/repo", "repos2/repo", True),
    ("repos2/repo", "repos2/repo/x", False),
]


@pytest.mark.parametrize(("pattern", "name", "matches"), CASES)
def test_globs_match_as_doublestar_does(pattern: str, name: str, matches: bool) -> None:
    assert compile_glob(pattern).matches(name) is matches


@pytest.mark.parametrize("pattern", ["[", "[]", "[!]", "{a", "a\\", "", "{a,{b}"])
def test_patterns_doublestar_refuses_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_glob(pattern)
