"""Fixtures of the API suite on top of tests/conftest.py."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import Stored, store_sample


@pytest.fixture
def other_repo(repo: str) -> str:
    """A second repository of the test, distinct from `repo` but as fresh."""
    return f"{repo}-other"


@pytest.fixture
def stored(client: httpx.Client, repo: str) -> Stored:
    """Data already in `repo` that a rejected request must leave untouched."""
    return store_sample(client, repo)
