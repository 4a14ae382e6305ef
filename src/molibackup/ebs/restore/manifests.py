"""The PersistentVolume and PersistentVolumeClaim of a restored claim: pure, ready for
`kubectl apply -f`, as the EBS CSI driver's static provisioning describes them."""

from __future__ import annotations

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

    @property
    def pv_name(self) -> str:
        """A name unique to the restore, valid as a Kubernetes name."""
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


def render(claim: ClaimRestore) -> str:
    """Both objects as one YAML stream."""
    return yaml.safe_dump_all([persistent_volume(claim), persistent_volume_claim(claim)],
                              sort_keys=False)
