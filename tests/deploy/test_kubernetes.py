"""deploy/kubernetes: each overlay rendered with the real `kubectl kustomize`, validated
offline against the Kubernetes schemas (kubernetes-validate, strict) and, for the
ServiceMonitor, against the Prometheus Operator's own CRD schema (vendored), then held to the
deployment's invariants: probes, non-root, read-only root, limits, what each part may
reach, and a ConfigMap whose config passes the real `ocistore verify`."""

from __future__ import annotations

import ipaddress
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
from kubernetes_validate import utils as kv_utils

from ocistore.config import Config, EmbeddedCacheConfig, load_config
from tests.deploy.common import assert_verifies, ocistore_argv_ok
from tests.deploy.kube import (
    KUBERNETES,
    KUBERNETES_VERSION,
    OVERLAYS,
    Doc,
    Workload,
    is_custom,
    named,
    of_kind,
    render,
    rendered,
    selects,
    validate_builtin,
    validate_custom,
    workloads,
)

CONFIG_DIR = "/etc/ocistore"
CONFIG_PATH = f"{CONFIG_DIR}/config.json"
OCISTORE_COMMANDS = {"ocistore", "ocistore-api", "ocistore-gc-worker", "ocistore-scrub-worker"}


def _is_ocistore(container: Doc) -> bool:
    return container["command"][0] in OCISTORE_COMMANDS


def _config_of(docs: list[Doc], workload: Workload, tmp_path: Path) -> tuple[Path, Config]:
    """The config file an ocistore container reads: its ConfigMap's config.json, written out."""
    (container,) = [c for c in workload.containers if _is_ocistore(c)]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == CONFIG_DIR)
    assert mount.get("readOnly") is True
    source = workload.volume(mount["name"])["configMap"]["name"]
    data = named(docs, "ConfigMap", source)["data"]
    assert set(data) == {"config.json"}
    path = tmp_path / f"{workload.doc['metadata']['name']}.json"
    path.write_text(data["config.json"])
    return path, load_config(path)


# --- rendering and schemas -----------------------------------------------------------------

def test_kubernetes_validate_ships_the_version_used() -> None:
    assert KUBERNETES_VERSION.rsplit(".", 1)[0] in {v.rsplit(".", 1)[0] for v in kv_utils.all_versions()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_the_schemas(overlay: str) -> None:
    docs = rendered(overlay)
    custom = 0
    for doc in docs:
        if is_custom(doc):
            validate_custom(doc)
            custom += 1
        else:
            validate_builtin(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "ocistore", f"{doc['kind']}/{doc['metadata']['name']}"
    assert custom == 1, "the ServiceMonitor, validated by its CRD's schema"
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "an object rendered twice"


def test_schemas_catch_mistakes() -> None:
    """Strict validation: an unknown field is refused, both by the Kubernetes schemas and by the CRD's."""
    docs = rendered("scaled")
    deployment = named(docs, "Deployment", "ocistore-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate_builtin(deployment)
    monitor = of_kind(docs, "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["pth"] = "/metrics"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(monitor)


def test_single_is_one_serve_statefulset_on_a_claim() -> None:
    docs = rendered("single")
    (sts,) = of_kind(docs, "StatefulSet")
    assert not of_kind(docs, "Deployment") and not of_kind(docs, "HorizontalPodAutoscaler")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (container,) = Workload(sts).containers
    assert container["command"] == ["ocistore", "serve", CONFIG_PATH]
    assert any(m["name"] == claim["metadata"]["name"] for m in container["volumeMounts"])


def test_scaled_has_api_workers_and_redis() -> None:
    docs = rendered("scaled")
    commands = {w.doc["metadata"]["name"]: w.containers[0]["command"][0] for w in workloads(docs)}
    assert commands == {"ocistore-api": "ocistore-api", "ocistore-gc-worker": "ocistore-gc-worker",
                        "ocistore-scrub-worker": "ocistore-scrub-worker", "ocistore-redis": "redis-server"}
    assert named(docs, "StatefulSet", "ocistore-redis")["spec"]["volumeClaimTemplates"]
    for name in ("ocistore-api", "ocistore-gc-worker", "ocistore-scrub-worker"):
        assert named(docs, "Deployment", name)


def test_hpa_scales_the_api_and_every_deployment_has_a_pdb() -> None:
    docs = rendered("scaled")
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ocistore-api")
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert "replicas" not in named(docs, "Deployment", "ocistore-api")["spec"], "the HPA owns the count"
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        labels = Workload(deployment).pod_labels
        covering = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{deployment['metadata']['name']}: {len(covering)} PodDisruptionBudgets"
        assert "maxUnavailable" in covering[0]["spec"] or "minAvailable" in covering[0]["spec"]
        assert selects(deployment["spec"]["selector"], labels)


# --- every workload --------------------------------------------------------------------------

def _all_workloads() -> list[tuple[str, Workload]]:
    return [(overlay, w) for overlay in OVERLAYS for w in workloads(rendered(overlay))]


WORKLOADS = _all_workloads()
IDS = [f"{o}:{w.name}" for o, w in WORKLOADS]


def _port_names(container: Doc) -> set[str]:
    return {p["name"] for p in container.get("ports", [])}


@pytest.mark.parametrize(("overlay", "workload"), WORKLOADS, ids=IDS)
def test_every_container_has_real_probes(overlay: str, workload: Workload) -> None:
    for container in workload.containers:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container.get(kind), f"{workload.name}/{container['name']}: no {kind}"
        probes: dict[str, Doc] = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        for kind, probe in probes.items():
            assert probe.get("timeoutSeconds", 1) < probe.get("periodSeconds", 10) or kind == "startupProbe"
        if "http" in _port_names(container):
            # The HTTP server's own endpoints (services/api/ocistore_api/app.py).
            paths = {k: p["httpGet"]["path"] for k, p in probes.items()}
            assert paths == {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
            for probe in probes.values():
                assert probe["httpGet"]["port"] == "http"
        elif _is_ocistore(container):
            # No HTTP server in a worker: the package's own CLI check, parsed by its real parser.
            for kind, probe in probes.items():
                argv = probe["exec"]["command"]
                assert argv[:2] == ["ocistore", "verify"] and argv[-1] == CONFIG_PATH, argv
                ocistore_argv_ok(argv)
                # Liveness dials nothing: an outage of Redis or S3 must not restart the workers.
                assert ("--connect" in argv) == (kind != "livenessProbe"), f"{kind}: {argv}"
        else:
            for probe in probes.values():
                assert probe["exec"]["command"] == ["sh", "-c", "redis-cli ping | grep -q PONG"]


@pytest.mark.parametrize(("overlay", "workload"), WORKLOADS, ids=IDS)
def test_every_container_has_requests_and_limits(overlay: str, workload: Workload) -> None:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}

    def quantity(text: str) -> float:
        for suffix, factor in units.items():
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * factor
        return float(text)

    for container in workload.containers:
        resources = container["resources"]
        for what in ("cpu", "memory"):
            request, limit = resources["requests"][what], resources["limits"][what]
            assert 0 < quantity(request) <= quantity(limit), f"{workload.name}: {what} {request} > {limit}"


@pytest.mark.parametrize(("overlay", "workload"), WORKLOADS, ids=IDS)
def test_every_pod_is_non_root_with_a_read_only_root(overlay: str, workload: Workload) -> None:
    pod = workload.pod
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] > 0 and security["runAsGroup"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    if workload.doc["spec"].get("volumeClaimTemplates"):
        assert security["fsGroup"] > 0, "the claim must be writable by the pod's group"
        assert security.get("fsGroupChangePolicy") == "OnRootMismatch", "no walk of the whole volume per start"
    if any(_is_ocistore(c) for c in workload.containers):
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (10001, 10001, 10001), \
            "the image's user (deploy/Dockerfile)"
    for container in workload.containers:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc.get("privileged") is not True and sc.get("runAsUser", 1) != 0
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and not tmp[0].get("readOnly"), f"{workload.name}: /tmp must be a writable volume"
        assert "emptyDir" in workload.volume(tmp[0]["name"])


@pytest.mark.parametrize(("overlay", "workload"), WORKLOADS, ids=IDS)
def test_images_are_pinned(overlay: str, workload: Workload) -> None:
    for container in workload.containers:
        image = container["image"]
        if _is_ocistore(container):
            # The image built from deploy/Dockerfile, named in the overlay's `images:`.
            assert image == "registry.example.com/ocistore:0.1.0", image
        else:
            name, _, digest = image.partition("@sha256:")
            assert len(digest) == 64 and ":" in name, f"{image}: not tag@sha256:digest"
        assert container.get("imagePullPolicy", "IfNotPresent") != "Always"


@pytest.mark.parametrize(("overlay", "workload"), [(o, w) for o, w in WORKLOADS
                                                   if any(_is_ocistore(c) for c in w.containers)],
                         ids=[i for i, (_, w) in zip(IDS, WORKLOADS, strict=True)
                              if any(_is_ocistore(c) for c in w.containers)])
def test_config_map_passes_ocistore_verify_and_fits_the_pod(overlay: str, workload: Workload,
                                                            tmp_path: Path) -> None:
    docs = rendered(overlay)
    path, config = _config_of(docs, workload, tmp_path)
    out = assert_verifies(path, tmp_path)
    (container,) = [c for c in workload.containers if _is_ocistore(c)]
    ocistore_argv_ok(container["command"])
    assert container["command"][1:2] == [CONFIG_PATH] or container["command"][1:3] == ["serve", CONFIG_PATH]
    # Every directory the process writes is on a writable volume: the root filesystem is read-only.
    writable = [PurePosixPath(m["mountPath"]) for m in container["volumeMounts"] if not m.get("readOnly")]
    needed = [PurePosixPath("/tmp")]
    for store in [config.storage, *config.storage.sub_paths.values()]:
        if store.storage_driver is None:
            needed.append(PurePosixPath(store.root_directory or "."))
        if store.dedupe and (store.cache_driver is None or isinstance(store.cache_driver, EmbeddedCacheConfig)):
            needed.append(PurePosixPath(store.holder_index_dir))
    if config.log.output:
        needed.append(PurePosixPath(config.log.output).parent)
    for directory in needed:
        assert directory.is_absolute(), f"{directory}: relative to a read-only working directory"
        assert any(directory == w or w in directory.parents for w in writable), \
            f"{workload.name}: the config writes {directory}, which is on no writable volume"
    if overlay == "single":
        assert config.redis_url is None, "one process needs no Redis"
        (claim,) = workload.doc["spec"]["volumeClaimTemplates"]
        data = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
        assert PurePosixPath(data["mountPath"]) == PurePosixPath(config.storage.root_directory or "")
    else:
        # Many replicas share one store: S3, a remote holder index, and Redis between them.
        assert config.storage.storage_driver is not None and config.storage.remote_cache
        assert config.storage.cache_driver is not None and config.storage.cache_driver.name == "dynamodb"
        redis = config.redis_url or ""
        assert redis.startswith("redis://ocistore-redis:6379/"), redis
        assert named(docs, "Service", "ocistore-redis")["spec"]["ports"][0]["port"] == 6379
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["OCISTORE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "ocistore-redis", "key": "url", "optional": True}
        assert container["envFrom"] == [{"secretRef": {"name": "ocistore-aws", "optional": True}}]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if ports:
        assert ports == {"http": config.http.port}
        assert config.http.address in ("0.0.0.0", "::"), "reachable from the Service"
        assert f"listens on {config.http.address}:{config.http.port}" in out.replace("http://", "")
        (monitor,) = of_kind(docs, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["path"] == config.metrics.prometheus.path
        assert config.metrics.enable


# --- Service, Ingress, monitoring ----------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_ingress_and_monitor_reach_the_http_pods(overlay: str) -> None:
    docs = rendered(overlay)
    service = named(docs, "Service", "ocistore")
    serving = [w for w in workloads(docs) if selects({"matchLabels": service["spec"]["selector"]}, w.pod_labels)]
    assert serving and all(any("http" in _port_names(c) for c in w.containers) for w in serving)
    assert all(not any("http" in _port_names(c) for c in w.containers) for w in workloads(docs) if w not in serving)
    assert service["spec"]["ports"] == [{"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}]
    (ingress,) = of_kind(docs, "Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "proxy-body-size"] == "0", "no body size limit: layers are GiB"
    assert notes[prefix + "proxy-request-buffering"] == "off", "stream uploads, do not spool them"
    assert notes[prefix + "proxy-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[prefix + timeout]) >= 600
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/v2", "Prefix"), "only the Distribution API is published"
    assert path["backend"]["service"] == {"name": "ocistore", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    for overlay in OVERLAYS:
        (namespace,) = of_kind(rendered(overlay), "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- NetworkPolicy ---------------------------------------------------------------------------

@dataclass
class Peer:
    """One end of a connection: a pod (namespace, labels, named ports) or an outside address."""

    what: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: dict[str, int] = field(default_factory=dict)


INGRESS_CONTROLLER = Peer("ingress controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
KUBE_DNS = Peer("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, ports={"dns": 53})
STRANGER = Peer("a pod of another namespace", "default", {"app": "other"})
INTERNET = Peer("an outside address (S3)", ip="52.216.0.1")


def _pod(workload: Workload) -> Peer:
    ports = {p["name"]: p["containerPort"] for c in workload.containers for p in c.get("ports", [])}
    return Peer(workload.name, "ocistore", workload.pod_labels, ports=ports)


def _peer_matches(element: Doc, peer: Peer) -> bool:
    if "ipBlock" in element:
        if peer.ip is None:
            return False
        block = element["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.namespace is None:
        return False
    if "namespaceSelector" in element:
        if not selects(element["namespaceSelector"] or {}, {"kubernetes.io/metadata.name": peer.namespace}) \
                and element["namespaceSelector"] != {}:
            return False
    elif peer.namespace != "ocistore":
        return False
    return "podSelector" not in element or element["podSelector"] == {} \
        or selects(element["podSelector"], peer.labels)


def _port_matches(rules: list[Doc] | None, port: int, protocol: str, destination: Peer) -> bool:
    if not rules:
        return True
    for rule in rules:
        wanted = rule.get("port")
        if rule.get("protocol", "TCP") != protocol:
            continue
        number = destination.ports.get(wanted) if isinstance(wanted, str) else wanted
        if wanted is None or number == port:
            return True
    return False


def allowed(docs: list[Doc], source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    """Whether the rendered NetworkPolicies let `source` open `port` on `destination`: the
    egress policies of the source if it is one of ours, the ingress ones of the destination if it is."""
    policies = of_kind(docs, "NetworkPolicy")

    def side(direction: str, ours: Peer, other: Peer, target: Peer) -> bool:
        if ours.namespace != "ocistore":
            return True  # not ours: other namespaces' policies are not in this repository
        applying = [p for p in policies if direction in p["spec"].get("policyTypes", [])
                    and (p["spec"]["podSelector"] == {} or selects(p["spec"]["podSelector"], ours.labels))]
        if not applying:
            return True
        key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        return any(
            (not rule.get(peers) or any(_peer_matches(e, other) for e in rule[peers]))
            and _port_matches(rule.get("ports"), port, protocol, target)
            for p in applying for rule in p["spec"].get(key, [])
        )

    return side("Egress", source, destination, destination) and side("Ingress", destination, source, destination)


def _by_component(docs: list[Doc]) -> dict[str, Peer]:
    return {w.pod_labels["app.kubernetes.io/component"]: _pod(w) for w in workloads(docs)}


def test_network_policies_of_single() -> None:
    docs = rendered("single")
    registry = _by_component(docs)["registry"]
    assert allowed(docs, INGRESS_CONTROLLER, registry, 5000)
    assert allowed(docs, PROMETHEUS, registry, 5000)
    assert not allowed(docs, STRANGER, registry, 5000)
    assert not allowed(docs, INGRESS_CONTROLLER, registry, 22)
    # On its own disk, it connects nowhere: not even DNS.
    for peer, port, protocol in ((KUBE_DNS, 53, "UDP"), (INTERNET, 443, "TCP"), (STRANGER, 80, "TCP")):
        assert not allowed(docs, registry, peer, port, protocol), peer.what


def test_network_policies_of_scaled() -> None:
    docs = rendered("scaled")
    pods = _by_component(docs)
    api, gc, scrub, redis = pods["registry"], pods["gc-worker"], pods["scrub-worker"], pods["redis"]
    # api: in from the ingress controller (and Prometheus) on the http port only.
    assert allowed(docs, INGRESS_CONTROLLER, api, 5000) and allowed(docs, PROMETHEUS, api, 5000)
    for peer in (STRANGER, gc, scrub, redis):
        assert not allowed(docs, peer, api, 5000), peer.what
    # workers: nothing comes in (they serve nothing, not even metrics).
    for worker in (gc, scrub):
        for peer in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER, api, redis):
            assert not allowed(docs, peer, worker, 5000), f"{peer.what} -> {worker.what}"
    # redis: in from the ocistore pods only, on its port; out to nothing.
    for peer in (api, gc, scrub):
        assert allowed(docs, peer, redis, 6379), peer.what
        assert not allowed(docs, peer, redis, 5000), peer.what
    for peer in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER):
        assert not allowed(docs, peer, redis, 6379), peer.what
    for peer, port, protocol in ((KUBE_DNS, 53, "UDP"), (INTERNET, 443, "TCP"), (api, 5000, "TCP")):
        assert not allowed(docs, redis, peer, port, protocol), peer.what
    # api and workers: out to DNS, to S3/DynamoDB/STS over HTTPS, and to Redis; nothing else.
    for pod in (api, gc, scrub):
        assert allowed(docs, pod, KUBE_DNS, 53, "UDP") and allowed(docs, pod, KUBE_DNS, 53, "TCP"), pod.what
        assert allowed(docs, pod, INTERNET, 443), pod.what
        for peer, port in ((INTERNET, 80), (INTERNET, 6379), (STRANGER, 443), (KUBE_DNS, 443)):
            assert not allowed(docs, pod, peer, port), f"{pod.what} -> {peer.what}:{port}"


# --- switching to an external Redis, as the README says ---------------------------------------

def test_switching_to_an_external_redis(tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    kustomization = tree / "overlays" / "scaled" / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count("  - ../../components/redis\n") == 1
    kustomization.write_text(text.replace("  - ../../components/redis\n", "  - ../../components/external-redis\n"))
    config_file = tree / "overlays" / "scaled" / "config.json"
    config = json.loads(config_file.read_text())
    config["redis"] = "redis://my-redis.example.internal:6379/0"
    config_file.write_text(json.dumps(config))
    docs = render(tree / "overlays" / "scaled")
    for doc in docs:
        validate_custom(doc) if is_custom(doc) else validate_builtin(doc)
    assert not of_kind(docs, "StatefulSet")
    assert "ocistore-redis" not in {d["metadata"]["name"] for d in of_kind(docs, "Service")}
    pods = _by_component(docs)
    outside = Peer("an outside Redis", ip="10.20.30.40")
    for pod in (pods["registry"], pods["gc-worker"], pods["scrub-worker"]):
        assert allowed(docs, pod, outside, 6379), pod.what
    api = Workload(named(docs, "Deployment", "ocistore-api"))
    path, loaded = _config_of(docs, api, tmp_path)
    assert_verifies(path, tmp_path)
    assert loaded.redis_url == "redis://my-redis.example.internal:6379/0"

