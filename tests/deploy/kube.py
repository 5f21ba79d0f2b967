"""Rendering the kustomize overlays with the real kubectl, validating what comes out, and
reading it: workloads, their pods' containers, selectors."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.common import DEPLOY, SCHEMAS, tool

KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ["single", "scaled"]
# kubectl's own minor version here (1.32), one kubernetes-validate ships schemas for.
KUBERNETES_VERSION = "1.32.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Doc = dict[str, Any]


def render(directory: Path) -> list[Doc]:
    result = subprocess.run([tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert docs, f"{directory} renders nothing"
    return docs


@cache
def _rendered(overlay: str) -> str:
    return yaml.safe_dump_all(render(KUBERNETES / "overlays" / overlay))


def rendered(overlay: str) -> list[Doc]:
    """An overlay's objects (rendered once per test session, handed out as fresh copies)."""
    return list(yaml.safe_load_all(_rendered(overlay)))


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@dataclass
class Workload:
    doc: Doc

    @property
    def name(self) -> str:
        return f"{self.doc['kind']}/{self.doc['metadata']['name']}"

    @property
    def pod(self) -> Doc:
        return self.doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    @property
    def pod_labels(self) -> dict[str, str]:
        return self.doc["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]

    @property
    def containers(self) -> list[Doc]:
        return list(self.pod.get("initContainers", [])) + list(self.pod["containers"])

    def volume(self, name: str) -> Doc:
        for v in self.pod.get("volumes", []):
            if v["name"] == name:
                return v  # type: ignore[no-any-return]
        for claim in self.doc["spec"].get("volumeClaimTemplates", []):
            if claim["metadata"]["name"] == name:
                return {"name": name, "persistentVolumeClaim": claim}
        raise AssertionError(f"{self.name}: no volume {name}")


def workloads(docs: list[Doc]) -> list[Workload]:
    return [Workload(d) for d in docs if d["kind"] in WORKLOAD_KINDS]


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def validate_builtin(doc: Doc) -> None:
    """Against the Kubernetes OpenAPI schema of KUBERNETES_VERSION, strictly (unknown fields refused)."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema made to refuse unknown fields, as the API server prunes them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the strict schema of each vendored CRD's served versions."""
    out: dict[tuple[str, str], Any] = {}
    for path in SCHEMAS.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's ObjectMeta, not the CRD's to describe.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = _strict(schema)
    return out


def validate_custom(doc: Doc) -> None:
    schema = _crd_schemas().get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no vendored CRD schema for {doc['apiVersion']} {doc['kind']}"
    jsonschema.Draft7Validator(schema).validate(doc)


def is_custom(doc: Doc) -> bool:
    return (doc["apiVersion"], doc["kind"]) in _crd_schemas()
