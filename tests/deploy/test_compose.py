"""docker-compose.yml, checked offline: no Compose v2 can be installed here (Debian 12 ships
only the Python Compose v1), so the file is validated against the Compose Specification's
JSON Schema that Compose v2 itself validates with (vendored from compose-go, see
tests/deploy/schemas/README.md), then held to what the deployment promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from ocistore.config import load_config
from tests.deploy.common import DEPLOY, REPO, SCHEMAS, assert_verifies, ocistore_argv_ok
from tests.deploy.dockerfile import parse

DIGEST = re.compile(r"^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _test_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return [str(t) for t in test]


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_mistake(compose: dict[str, Any]) -> None:
    """The vendored schema is strict: an unknown key in a service is refused."""
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"service {name} has no healthcheck"
        check = service["healthcheck"]
        assert not check.get("disable"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_redis_healthcheck_pings(compose: dict[str, Any]) -> None:
    argv = _test_argv(compose["services"]["redis"])
    assert argv[0] == "CMD-SHELL" and "redis-cli ping" in argv[1] and "PONG" in argv[1]


def test_api_healthcheck_asks_readyz_on_the_configs_port(compose: dict[str, Any], tmp_path: Path) -> None:
    api = compose["services"]["api"]
    argv = _test_argv(api)
    assert argv[1:3] == ["python", "-c"], "the image has no curl: its own Python does the request"
    compile(argv[3], "api healthcheck", "exec")
    url = urlparse(re.findall(r"'(http://[^']+)'", argv[3])[0])
    assert url.path == "/readyz"
    config = load_config(_mounted_config(api))
    assert url.port == config.http.port
    assert [str(config.http.port)] == [str(p) for p in api["expose"]]


def test_worker_healthchecks_run_the_real_cli_check(compose: dict[str, Any]) -> None:
    for name in ("gc-worker", "scrub-worker"):
        argv = _test_argv(compose["services"][name])
        assert argv[0] == "CMD"
        assert argv[1:4] == ["ocistore", "verify", "--connect"], name
        ocistore_argv_ok(argv[1:])


def test_lb_healthcheck_reaches_a_server_nginx_conf_has(compose: dict[str, Any]) -> None:
    argv = _test_argv(compose["services"]["lb"])
    url = urlparse(argv[-1])
    assert argv[1] == "wget" and url.hostname == "127.0.0.1"
    conf = (DEPLOY / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{url.port};" in conf
    assert f"location = {url.path} {{" in conf


def test_third_party_images_are_pinned_by_digest_and_ours_are_built(compose: dict[str, Any]) -> None:
    targets = {s.name for s in parse(DEPLOY / "Dockerfile").stages}
    for name, service in compose["services"].items():
        if "image" in service:
            assert DIGEST.match(service["image"]), f"{name}: image {service['image']} is not tag@sha256:digest"
        else:
            build = service["build"]
            assert (REPO / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
            assert build["target"] in targets, f"{name}: no target {build['target']} in deploy/Dockerfile"


def test_depends_on_waits_only_for_services_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for other, how in (service.get("depends_on") or {}).items():
            assert other in services, f"{name} depends on unknown {other}"
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"


def _mounted_config(service: dict[str, Any]) -> Path:
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == "/etc/ocistore/config.json":
            assert rest.endswith(":ro"), "the config is mounted read-only"
            return Path(REPO / str(source)).resolve()
    raise AssertionError("no config mounted at /etc/ocistore/config.json")


def test_mounted_config_verifies_and_names_the_compose_redis(compose: dict[str, Any], tmp_path: Path) -> None:
    services = compose["services"]
    for name in ("api", "gc-worker", "scrub-worker"):
        path = _mounted_config(services[name])
        assert_verifies(path, tmp_path)
        config = load_config(path)
        redis = urlparse(config.redis_url or "")
        assert redis.hostname in services and (redis.port or 6379) == 6379, f"{name}: redis is {config.redis_url}"
        assert config.storage.root_directory == "/data"
        assert "data:/data" in services[name]["volumes"], f"{name} does not mount the shared data volume"


def test_ocistore_containers_are_read_only_and_unprivileged(compose: dict[str, Any]) -> None:
    for name in ("api", "gc-worker", "scrub-worker"):
        service = compose["services"][name]
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), f"{name}: /tmp must stay writable"
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
