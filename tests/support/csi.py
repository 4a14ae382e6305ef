"""Checks CSI snapshot objects as a cluster would on creation, without a cluster.

The API server validates a VolumeSnapshot or VolumeSnapshotContent against its CRD's
`openAPIV3Schema` (unknown fields pruned: here refused, to catch typos) and evaluates the
CEL rules (`x-kubernetes-validations`) that apply on creation, those without `oldSelf`. The
CRDs are the external-snapshotter's own (tests/data/external-snapshotter, README there).
Every creation rule of the CRDs must be one this module knows: a CRD update that adds a rule
fails the tests until the rule is taught here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parents[1] / "data" / "external-snapshotter"
FILES = {"VolumeSnapshot": "snapshot.storage.k8s.io_volumesnapshots.yaml",
         "VolumeSnapshotContent": "snapshot.storage.k8s.io_volumesnapshotcontents.yaml"}
KUBERNETES_VERSIONS = ["1.29", "1.33", "1.37"]


def _one_of(first: str, second: str) -> Callable[[dict[str, Any]], bool]:
    return lambda value: (first in value) != (second in value)


#: The creation-time CEL rules of the v1 CRDs, as Python.
RULES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "(has(self.volumeHandle) && !has(self.snapshotHandle)) || (!has(self.volumeHandle) && "
    "has(self.snapshotHandle))": _one_of("volumeHandle", "snapshotHandle"),
    "(has(self.volumeSnapshotContentName) && !has(self.persistentVolumeClaimName)) || "
    "(!has(self.volumeSnapshotContentName) && has(self.persistentVolumeClaimName))":
        _one_of("volumeSnapshotContentName", "persistentVolumeClaimName"),
    "has(self.name) && has(self.__namespace__)":
        lambda value: bool(value.get("name")) and bool(value.get("namespace")),
}


def crd(kind: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CRDS / FILES[kind]).read_text())
    return document


def schema(kind: str) -> dict[str, Any]:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == "v1"]
    return strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))


def strict(node: Any) -> Any:
    """Objects with listed properties take no others (the API server would prune them)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and not node.get(
                "x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def creation_rules(node: Any, value: Any) -> Iterator[tuple[str, str, Any]]:
    """(rule, message, the value it applies to) for every creation-time rule in reach."""
    if not isinstance(node, dict) or not isinstance(value, dict):
        return
    for rule in node.get("x-kubernetes-validations", []):
        if "oldSelf" not in rule["rule"]:
            yield rule["rule"], rule.get("message", rule["rule"]), value
    for name, child in node.get("properties", {}).items():
        if name in value:
            yield from creation_rules(child, value[name])


def check(document: dict[str, Any]) -> None:
    """Raise AssertionError (or jsonschema's error) for what a cluster would refuse."""
    kind = document["kind"]
    if kind not in FILES:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)
        return
    definition = crd(kind)
    namespaced = definition["spec"]["scope"] == "Namespaced"
    assert ("namespace" in document["metadata"]) == namespaced, (
        f"{kind} is {'namespaced' if namespaced else 'cluster-scoped'}")
    assert document["apiVersion"] == f"{definition['spec']['group']}/v1"
    body = {key: value for key, value in document.items() if key != "metadata"}
    jsonschema.Draft7Validator(schema(kind)).validate(body)
    (version,) = [v for v in definition["spec"]["versions"] if v["name"] == "v1"]
    for rule, message, value in creation_rules(version["schema"]["openAPIV3Schema"], body):
        assert rule in RULES, f"a CEL rule this check does not know: {rule}"
        assert RULES[rule](value), f"{kind}: {message}"
