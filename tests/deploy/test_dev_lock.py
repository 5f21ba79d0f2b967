"""requirements-dev.lock: what `make install` puts in .venv, so `make test` runs the same
versions on every clean clone until the lock is regenerated on purpose. Without it, each CI run
resolved the newest releases, and one upstream release (moto 5.2.6, whose IAM refuses zot's
documented S3 policy) failed a commit that had passed the day before."""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.common import DEPLOY, PYPROJECT, REPO, read_lock

DEV_LOCK = REPO / "requirements-dev.lock"
HERE = {**{k: str(v) for k, v in default_environment().items()}, "extra": ""}


def _applies(marker: Marker | None) -> bool:
    return marker is None or marker.evaluate(HERE)


def test_the_lock_pins_every_dependency_and_dev_dependency_in_range_for_this_machine() -> None:
    lock = read_lock(DEV_LOCK)
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["dev"]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is in pyproject.toml, not in requirements-dev.lock: regenerate it (README)"
        version, marker, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), f"locked {name}=={version} is outside {req}"
        assert _applies(marker), f"{name} is locked only for other platforms ({marker})"


def test_the_lock_holds_the_images_versions_so_the_tests_run_what_ships() -> None:
    header = DEV_LOCK.read_text().splitlines()[1]
    for flag in ("--extra dev", "-c deploy/requirements.lock", "-c deploy/requirements-build.lock"):
        assert flag in header, f"requirements-dev.lock was not made with {flag} (README, Locked dependencies)"
    dev = read_lock(DEV_LOCK)
    for image_lock in ("requirements.lock", "requirements-build.lock"):
        for name, (version, _, _) in read_lock(DEPLOY / image_lock).items():
            if name in dev:
                assert dev[name][0] == version, f"{name}: {dev[name][0]} in the dev lock, {version} in {image_lock}"


def test_the_environment_running_these_tests_is_the_lock() -> None:
    """`make install` installs the lock with --no-deps: nothing newer, nothing unlocked."""
    lock = read_lock(DEV_LOCK)
    checked = 0
    for name, (version, marker, _) in lock.items():
        if not _applies(marker):
            continue
        installed = metadata.version(name)
        assert installed == str(version), f"{name} {installed} is installed, the lock says {version}: make install"
        checked += 1
    assert checked > 100, f"only {checked} locked distributions apply to Python {sys.version_info[:2]} here"
