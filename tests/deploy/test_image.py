"""deploy/Dockerfile and the lock files it installs from, checked offline (no daemon here):
its targets, labels, health checks and commands, and that the locks pin what pyproject.toml
asks for, with hashes."""

from __future__ import annotations

import fnmatch
import re
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ocistore.config import load_config
from tests.deploy.common import DEPLOY, PYPROJECT, REPO, assert_verifies, ocistore_argv_ok, read_lock
from tests.deploy.dockerfile import Dockerfile, parse

DOCKERFILE = DEPLOY / "Dockerfile"
TARGETS = ["serve", "api", "gc-worker", "scrub-worker"]
HTTP_TARGETS = ["serve", "api"]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# What the image is built for: the base image's CPython on Linux (amd64 or arm64).
IMAGE_ENVS = [
    {"python_version": "3.11", "python_full_version": "3.11.16", "sys_platform": "linux", "os_name": "posix",
     "platform_system": "Linux", "platform_machine": machine, "platform_python_implementation": "CPython",
     "implementation_name": "cpython", "extra": ""}
    for machine in ("x86_64", "aarch64")
]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE)


def test_every_target_exists_and_api_is_the_default(dockerfile: Dockerfile) -> None:
    names = [s.name for s in dockerfile.stages]
    for target in TARGETS:
        assert target in names
    # Without --target the builder takes the last stage: the api, as docker-compose.yml assumes.
    assert names[-1] == "api"
    for target in TARGETS:
        assert [s.name for s in dockerfile.chain(target)][1:] == ["runtime"], "each target is runtime plus a CMD"


def test_base_images_are_pinned_by_digest(dockerfile: Dockerfile) -> None:
    names = {s.name for s in dockerfile.stages}
    for stage in dockerfile.stages:
        if stage.base not in names:
            assert DIGEST.search(stage.base), f"stage {stage.name}: FROM {stage.base} is not pinned by digest"
    build, runtime = dockerfile.stage("build"), dockerfile.stage("runtime")
    # The venv built in one is copied into the other: one interpreter for both.
    assert build.base == runtime.base


def test_commands_are_exec_form_and_real_entry_points(dockerfile: Dockerfile) -> None:
    for target in TARGETS:
        cmd = dockerfile.effective(target, "CMD")
        assert cmd is not None, target
        argv = cmd.exec_form()  # exec form: the process is PID 1's child and gets SIGTERM itself
        ocistore_argv_ok(argv)
        assert argv[-1] == "/etc/ocistore/config.json"
    assert dockerfile.effective("serve", "CMD").exec_form()[:2] == ["ocistore", "serve"]  # type: ignore[union-attr]
    assert dockerfile.effective("api", "CMD").exec_form()[0] == "ocistore-api"  # type: ignore[union-attr]
    assert dockerfile.effective("gc-worker", "CMD").exec_form()[0] == "ocistore-gc-worker"  # type: ignore[union-attr]
    assert dockerfile.effective("scrub-worker", "CMD").exec_form()[0] == "ocistore-scrub-worker"  # type: ignore[union-attr]


def test_images_run_as_the_fixed_non_root_user(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.stage("runtime")
    creates = " ".join(i.args for i in runtime.all("RUN"))
    assert "--uid 10001" in creates and "--gid 10001" in creates
    for target in TARGETS:
        user = dockerfile.effective(target, "USER")
        assert user is not None and user.args.split(":")[0] not in ("root", "0"), target


def _config_of(dockerfile: Dockerfile, target: str) -> Path:
    """The file COPY'd to /etc/ocistore/config.json last along the target's chain."""
    for stage in dockerfile.chain(target):
        for ins in reversed(stage.all("COPY")):
            words = ins.args.split()
            if words[-1] == "/etc/ocistore/config.json" and not words[0].startswith("--"):
                return REPO / words[0]
    raise AssertionError(f"{target}: no config copied to /etc/ocistore/config.json")


def test_each_target_has_a_healthcheck_that_fits_its_config(dockerfile: Dockerfile, tmp_path: Path) -> None:
    for target in TARGETS:
        check = dockerfile.effective(target, "HEALTHCHECK")
        assert check is not None, f"{target} has no HEALTHCHECK"
        flags = check.flags()
        for flag in ("interval", "timeout", "start-period", "retries"):
            assert flag in flags, f"{target}: HEALTHCHECK without --{flag}"
        argv = check.exec_form()
        config_file = _config_of(dockerfile, target)
        assert_verifies(config_file, tmp_path)
        config = load_config(config_file)
        if target in HTTP_TARGETS:
            assert argv[:2] == ["python", "-c"], f"{target}: the image has no curl; its Python does the request"
            compile(argv[2], f"{target} HEALTHCHECK", "exec")
            url = urlparse(re.findall(r"'(http://[^']+)'", argv[2])[0])
            assert url.path == "/readyz"
            exposed = dockerfile.effective(target, "EXPOSE")
            assert exposed is not None and int(exposed.args) == config.http.port == url.port
        else:
            assert argv[:3] == ["ocistore", "verify", "--connect"], f"{target}: a worker's check is verify --connect"
            ocistore_argv_ok(argv)
    # The scaled topology's services need Redis; the single process must not.
    assert load_config(_config_of(dockerfile, "api")).redis_url
    assert load_config(_config_of(dockerfile, "serve")).redis_url is None


def test_oci_labels(dockerfile: Dockerfile) -> None:
    project = PYPROJECT["project"]
    for target in TARGETS:
        labels = dockerfile.labels(target)
        for key in ("title", "description", "version", "revision", "created", "licenses", "base.name",
                    "base.digest"):
            assert f"org.opencontainers.image.{key}" in labels, f"{target}: no org.opencontainers.image.{key}"
        assert labels["org.opencontainers.image.title"] == f"ocistore-{target}"
        assert labels["org.opencontainers.image.version"] == project["version"]
        assert labels["org.opencontainers.image.licenses"] == project["license"]
        assert labels["org.opencontainers.image.description"] == project["description"]
        base = labels["org.opencontainers.image.base.name"], labels["org.opencontainers.image.base.digest"]
        assert dockerfile.stage("runtime").base == "@".join(base)


def test_the_build_installs_only_from_the_locks(dockerfile: Dockerfile) -> None:
    runs = [i.args for i in dockerfile.stage("build").all("RUN")]
    pip = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd or "pip wheel" in cmd]
    assert pip, "no pip in the build stage"
    for cmd in pip:
        if " -r " in cmd:
            assert "--require-hashes" in cmd and "--no-deps" in cmd, cmd
        else:
            # The project itself: built with the locked backend, installed without dependencies.
            assert "--no-deps" in cmd, cmd
            if "pip wheel" in cmd:
                assert "--no-build-isolation" in cmd and cmd.strip().startswith("/opt/build/bin/pip"), cmd
    locks = {w for run in runs for w in run.split() if w.endswith(".lock")}
    assert {Path(p).name for p in locks} == {"requirements.lock", "requirements-build.lock"}
    assert any("pip check" in run for run in runs), "pip check proves the lock is complete"


def test_build_context_holds_what_the_copies_need(dockerfile: Dockerfile) -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for stage in dockerfile.stages:
        for ins in stage.all("COPY"):
            words = ins.args.split()
            if words[0].startswith("--from"):
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the context"
                for pattern in patterns:
                    assert not fnmatch.fnmatch(source, pattern.strip("/")), f"COPY {source} is excluded by {pattern}"


# --- the lock files ----------------------------------------------------------------------

def _for_image(marker: Marker | None) -> bool:
    return marker is None or any(marker.evaluate(env) for env in IMAGE_ENVS)


def _extras_requirements(req: Requirement) -> list[Requirement]:
    """What the extras of a requirement add, read from the installed distribution's metadata."""
    found: list[Requirement] = []
    for extra in req.extras:
        for text in metadata.requires(req.name) or []:
            sub = Requirement(text)
            if sub.marker is not None and sub.marker.evaluate({"extra": extra}) \
                    and not sub.marker.evaluate({"extra": ""}):
                found.append(sub)
    return found


def test_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    lock = read_lock(DEPLOY / "requirements.lock")
    assert "pyproject.toml" in (DEPLOY / "requirements.lock").read_text().splitlines()[1], \
        "the lock's header names the command that made it, from pyproject.toml"
    wanted = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is in pyproject.toml, not in deploy/requirements.lock: regenerate it"
        version, marker, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), f"locked {name}=={version} is outside {req}"
        assert _for_image(marker), f"{name} is locked only for other platforms ({marker})"
        extras = _extras_requirements(req)
        assert not req.extras or extras, f"{req}: the extras add nothing? (is {req.name} installed?)"
        for sub in extras:
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for env in IMAGE_ENVS
                                         for e in req.extras):
                assert canonicalize_name(sub.name) in lock, f"{sub.name} (from {req}) is not in the lock"


def test_lock_is_closed_over_its_dependencies() -> None:
    """Each locked distribution installed here at the locked version: its own requirements
    (for the image's platforms) are locked too. `pip check` in the build proves the rest."""
    lock = read_lock(DEPLOY / "requirements.lock")
    checked = 0
    for name, (version, _, _) in lock.items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(installed.version) != version:
            continue
        checked += 1
        for text in installed.requires or []:
            sub = Requirement(text)
            if sub.marker is not None and not any(sub.marker.evaluate(env) for env in IMAGE_ENVS):
                continue  # an extra nobody asked for, or another platform
            assert canonicalize_name(sub.name) in lock, f"{name}=={version} needs {sub}, which is not locked"
    assert checked >= len(PYPROJECT["project"]["dependencies"]), f"only {checked} locked distributions checked"


def test_build_lock_pins_the_build_backend() -> None:
    lock = read_lock(DEPLOY / "requirements-build.lock")
    wanted = PYPROJECT["build-system"]["requires"]
    source = [line.strip() for line in (DEPLOY / "requirements-build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert source == wanted, "deploy/requirements-build.in must say what pyproject.toml's [build-system] requires"
    for text in wanted:
        req = Requirement(text)
        assert req.specifier.contains(lock[canonicalize_name(req.name)][0])
    backend = PYPROJECT["build-system"]["build-backend"].split(".")[0]
    assert canonicalize_name(backend) in lock


def test_lock_and_dockerfile_agree_on_python(dockerfile: Dockerfile) -> None:
    header = (DEPLOY / "requirements.lock").read_text().splitlines()[1]
    assert "--python-version 3.11" in header
    assert "python:3.11-" in dockerfile.stage("runtime").base
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(IMAGE_ENVS[0]["python_full_version"])

