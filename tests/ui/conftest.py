"""The web page in a real browser: Debian's chromium driven by Playwright, against a real
`ocistore serve` with htpasswd logins and zot access control.

Two users: `olga`, the admin (adminPolicy), and `rita`, who may read `team/web` and nothing
else. Each browser is a persistent context of its own (a fresh user-data-dir), logs in with
HTTP Basic as the registry asks for it, and runs with JavaScript off: the read-only views and
the delete's confirmation must work without it.

Screenshots go to a directory under pytest's temporary directory, printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.auth.conftest import htpasswd_text
from tests.servers import BIN, OcistoreServer, require_tool

ADMIN, READER = "olga", "rita"
PASSWORDS = {ADMIN: "olga-pw", READER: "rita-pw"}
ACCESS_CONTROL: dict[str, Any] = {
    "repositories": {"team/web": {"policies": [{"users": [READER], "actions": ["read"]}]}},
    "adminPolicy": {"users": [ADMIN], "actions": ["read", "create", "update", "delete"]},
}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_SHOTS: list[Path] = []
T = TypeVar("T")


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end in a thread of its own: Playwright's sync API keeps an event loop
    running in the test's thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def guarded_server(workdir: Path, storage: dict[str, Any] | None = None) -> OcistoreServer:
    """A server (not started) with the two users; GC on, with a gcDelay nothing in a test outlives
    (what a test needs old is made old by its files' times) and no periodic sweep during the run."""
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_text(PASSWORDS))
    http = {"auth": {"htpasswd": {"path": str(htpasswd)}}, "accessControl": ACCESS_CONTROL}
    return OcistoreServer(workdir, storage={"gc": True, "gcDelay": "1h", "gcInterval": "24h", **(storage or {})},
                          extra={"http": http})


def api(server: OcistoreServer, user: str = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(user, PASSWORDS[user]), timeout=60.0)


def ocistore(server: OcistoreServer, *args: str, status: int = 0) -> str:
    """The real command on the server's config; its standard output (`status`: the exit code
    expected, 1 for a scrub that finds damage)."""
    done = subprocess.run([str(BIN / "ocistore"), *args[:1], str(server.config_path), *args[1:]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == status, done.stderr
    return done.stdout


def du(server: OcistoreServer, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ocistore(server, "du", "--json", *args))
    return result


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """One Playwright for the tests of this package, closed when they end: its sync API keeps
    an event loop running in the test thread, where any later `asyncio.run` would fail."""
    require_tool("chromium")  # Debian's package; a missing browser fails the test, never skips it
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    _SHOTS.append(path)
    return path


Browse = Callable[[str, str], BrowserContext]


@pytest.fixture
def browse(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browse]:
    """`browse(url, user)`: a browser of its own for `user` (fresh profile, JavaScript off)."""
    opened: list[BrowserContext] = []

    def open_for(url: str, user: str) -> BrowserContext:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp(f"profile-{user}")), executable_path=require_tool("chromium"),
            headless=True, args=CHROMIUM_ARGS, java_script_enabled=False, base_url=url,
            http_credentials={"username": user, "password": PASSWORDS[user]},
            viewport={"width": 1400, "height": 900})
        context.set_default_timeout(30_000)
        opened.append(context)
        return context

    yield open_for
    for context in opened:
        context.close()


def snap(page: Page, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _SHOTS:
        count = len(list(path.glob("*.png")))
        terminalreporter.write_line(f"web page screenshots ({count}): {path}")
