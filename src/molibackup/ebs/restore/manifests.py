"""The PersistentVolume and PersistentVolumeClaim of a restored claim: pure, ready for
`kubectl apply -f`, as the EBS CSI driver's static provisioning describes them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

CSI_DRIVER = "ebs.csi.aws.com"
ZONE_LABEL = "topology.kubernetes.io/zone"
MANAGED_BY = {"app.kubernetes.io/managed-by": "molibackup"}


@dataclass(frozen=True)
class ClaimRestore:
    namespace: str
    claim_name: str
    volume_id: str
    zone: str
    size_gib: int
    restore_id: str
    snapshot_id: str
    storage_class: str = ""  # "" binds statically: no default class steps in
    fs_type: str = "ext4"
    #: Of a restore of several claims: the claim's own part of its PersistentVolume's name.
    part: str = ""

    @property
    def pv_name(self) -> str:
        """A name unique to the restore (and to the claim, in a restore of several), valid
        as a Kubernetes name."""
        if self.part:
            return dns_name("molibackup", self.restore_id, self.part)
        return re.sub(r"[^a-z0-9.-]", "-", f"molibackup-{self.restore_id}".lower())[:253]


def persistent_volume(claim: ClaimRestore) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": claim.pv_name,
            "labels": dict(MANAGED_BY),
            "annotations": {"molibackup.io/restored-from": claim.snapshot_id,
                            "molibackup.io/restore-id": claim.restore_id},
        },
        "spec": {
            "capacity": {"storage": f"{claim.size_gib}Gi"},
            "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": claim.storage_class,
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": claim.namespace, "name": claim.claim_name},
            "csi": {"driver": CSI_DRIVER, "volumeHandle": claim.volume_id,
                    "fsType": claim.fs_type},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": ZONE_LABEL, "operator": "In", "values": [claim.zone]}]}]}},
        },
    }


def persistent_volume_claim(claim: ClaimRestore) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim.claim_name,
            "namespace": claim.namespace,
            "labels": dict(MANAGED_BY),
            "annotations": {"molibackup.io/restored-from": claim.snapshot_id,
                            "molibackup.io/restore-id": claim.restore_id},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": f"{claim.size_gib}Gi"}},
            "storageClassName": claim.storage_class,
            "volumeName": claim.pv_name,
        },
    }


def render(*claims: ClaimRestore) -> str:
    """Each claim's PersistentVolume and claim, as one YAML stream."""
    return yaml.safe_dump_all([document for claim in claims for document in (
        persistent_volume(claim), persistent_volume_claim(claim))], sort_keys=False)


# --- CSI snapshots: VolumeSnapshotContent, VolumeSnapshot, and a claim restored from one -----

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
#: The labels that name a backup's job and claim, for `kubectl apply --prune -l ...`.
JOB_LABEL = "molibackup.io/job"
CLAIM_NAMESPACE_LABEL = "molibackup.io/claim-namespace"
CLAIM_LABEL = "molibackup.io/claim"
MAX_NAME = 253
MAX_LABEL = 63


def dns_name(*parts: str, limit: int = MAX_NAME) -> str:
    """A valid DNS subdomain of the parts: lowercase, '-' for what is not allowed, and when
    it must be cut, a hash of the whole kept at its end, so that two long names cut to the
    same prefix still differ."""
    whole = "-".join(parts)
    name = re.sub(r"[^a-z0-9.-]+", "-", whole.lower()).strip("-.")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(whole.encode()).hexdigest()[:10]
    return f"{name[:limit - 11].rstrip('-.')}-{digest}"


def label_value(text: str) -> str:
    """A label value (at most 63 characters): the text, or a cut of it and a hash."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if len(value) <= MAX_LABEL:
        return value
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{value[:MAX_LABEL - 11].rstrip('-._')}-{digest}"


@dataclass(frozen=True)
class SnapshotHandoff:
    """A snapshot given to the cluster: which job's, of which claim, and where it goes."""

    job: str
    snapshot_id: str
    start_time: str  # ISO 8601, for the annotation
    size_gib: int
    namespace: str  # where the VolumeSnapshot (and the claim, if any) goes
    claim_name: str  # the claim the snapshot is of (or is restored as)
    source_claim: str  # namespace/name of the claim it was taken of

    @property
    def snapshot_name(self) -> str:
        """The VolumeSnapshot's name: the claim's and the snapshot's, unique per both."""
        return dns_name(self.claim_name, self.snapshot_id)

    @property
    def content_name(self) -> str:
        """The VolumeSnapshotContent's name (cluster-wide): the snapshot and where it goes."""
        digest = hashlib.sha256(f"{self.namespace}/{self.snapshot_name}".encode()
                                ).hexdigest()[:10]
        return dns_name("molibackup", self.snapshot_id, digest)

    @property
    def labels(self) -> dict[str, str]:
        namespace, _, name = self.source_claim.partition("/")
        return {**MANAGED_BY, JOB_LABEL: label_value(self.job),
                CLAIM_NAMESPACE_LABEL: label_value(namespace), CLAIM_LABEL: label_value(name)}

    @property
    def annotations(self) -> dict[str, str]:
        return {"molibackup.io/snapshot-id": self.snapshot_id,
                "molibackup.io/snapshot-time": self.start_time,
                "molibackup.io/claim": self.source_claim}


def volume_snapshot_content(handoff: SnapshotHandoff) -> dict[str, Any]:
    """Pre-provisioned, and Retain: deleting it in the cluster never deletes the backup
    (rotation stays molibackup's)."""
    return {
        "apiVersion": SNAPSHOT_API,
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": handoff.content_name, "labels": handoff.labels,
                     "annotations": handoff.annotations},
        "spec": {
            "deletionPolicy": "Retain",
            "driver": CSI_DRIVER,
            "source": {"snapshotHandle": handoff.snapshot_id},
            "volumeSnapshotRef": {"name": handoff.snapshot_name,
                                  "namespace": handoff.namespace},
        },
    }


def volume_snapshot(handoff: SnapshotHandoff) -> dict[str, Any]:
    return {
        "apiVersion": SNAPSHOT_API,
        "kind": "VolumeSnapshot",
        "metadata": {"name": handoff.snapshot_name, "namespace": handoff.namespace,
                     "labels": handoff.labels, "annotations": handoff.annotations},
        "spec": {"source": {"volumeSnapshotContentName": handoff.content_name}},
    }


def claim_from_snapshot(handoff: SnapshotHandoff, storage_class: str | None
                        ) -> dict[str, Any]:
    """A claim the EBS CSI driver provisions from the VolumeSnapshot, in the zone where its
    pod is scheduled."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": f"{handoff.size_gib}Gi"}},
        "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot",
                       "name": handoff.snapshot_name},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": handoff.claim_name, "namespace": handoff.namespace,
                     "labels": handoff.labels, "annotations": handoff.annotations},
        "spec": spec,
    }


def render_snapshots(handoffs: list[SnapshotHandoff], storage_class: str | None = None,
                     with_claims: bool = False) -> str:
    """Each snapshot's content and VolumeSnapshot (and its claim), as one YAML stream, in
    the order given; the same snapshots give the same bytes."""
    documents: list[dict[str, Any]] = []
    for handoff in handoffs:
        documents += [volume_snapshot_content(handoff), volume_snapshot(handoff)]
        if with_claims:
            documents.append(claim_from_snapshot(handoff, storage_class))
    return yaml.safe_dump_all(documents, sort_keys=False)
