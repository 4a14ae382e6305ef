"""Builds a small fleet in the emulator, through the EC2 API like a user would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from tests.support.emulator import ACCOUNT, Emulator

ROLE = "arn:aws:iam::{}:role/molibackup"


def ec2_client_as(url: str, region: str, account: str | None = None) -> Any:
    """An EC2 client of our own account or, through the emulator's STS, of `account` (the
    credentials from a role's ARN act in that role's account)."""
    if account is None:
        return boto3.client("ec2", region_name=region, endpoint_url=url)
    sts = boto3.client("sts", region_name=region, endpoint_url=url)
    credentials = sts.assume_role(RoleArn=ROLE.format(account),
                                  RoleSessionName="test")["Credentials"]
    return boto3.client("ec2", region_name=region, endpoint_url=url,
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])

REGION = "us-west-2"
CLUSTER = "prod-eks"
AMI = "ami-12c6146b"  # one of the emulator's built-in images


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@dataclass
class Instance:
    instance_id: str
    root_volume: str
    volumes: dict[str, str] = field(default_factory=dict)  # Name -> volume id

    @property
    def all_volumes(self) -> list[str]:
        return [self.root_volume, *self.volumes.values()]


class Fleet:
    def __init__(self, client: Any, emulator: Emulator, region: str = REGION,
                 account: str = ACCOUNT) -> None:
        self.client = client
        self.emulator = emulator
        self.region = region
        self.account = account
        self._devices: dict[str, int] = {}

    def instance(self, tags: dict[str, str] | None = None,
                 volumes: dict[str, dict[str, str]] | None = None) -> Instance:
        """An instance with its root volume, plus one data volume per entry (Name -> tags)."""
        spec: dict[str, Any] = {"ImageId": AMI, "MinCount": 1, "MaxCount": 1}
        if tags:
            spec["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tag_list(tags)}]
        raw = self.client.run_instances(**spec)["Instances"][0]
        root = raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        instance = Instance(raw["InstanceId"], root)
        for name, volume_tags in (volumes or {}).items():
            instance.volumes[name] = self.attached_volume(
                instance.instance_id, {"Name": name, **volume_tags})
        return instance

    def attached_volume(self, instance_id: str, tags: dict[str, str]) -> str:
        volume_id = self.volume(tags)
        index = self._devices.get(instance_id, 0)
        self._devices[instance_id] = index + 1
        self.client.attach_volume(VolumeId=volume_id, InstanceId=instance_id,
                                  Device=f"/dev/sd{'fghijklmnop'[index]}")
        return volume_id

    def volume(self, tags: dict[str, str], zone: str | None = None, size: int = 1,
               **shape: Any) -> str:
        """A volume; `shape` takes CreateVolume's VolumeType, Iops, Throughput."""
        spec: dict[str, Any] = {"Size": size, "AvailabilityZone": zone or f"{self.region}a",
                                **shape}
        if tags:
            spec["TagSpecifications"] = [{"ResourceType": "volume", "Tags": tag_list(tags)}]
        return str(self.client.create_volume(**spec)["VolumeId"])

    def snapshot(self, volume_id: str, tags: dict[str, str] | None = None,
                 age_days: float = 0, state: str | None = None) -> str:
        spec: dict[str, Any] = {"VolumeId": volume_id, "Description": "made by hand"}
        if tags:
            spec["TagSpecifications"] = [{"ResourceType": "snapshot", "Tags": tag_list(tags)}]
        snapshot_id = str(self.client.create_snapshot(**spec)["SnapshotId"])
        if age_days:
            self.emulator.set_snapshot_age(self.region, snapshot_id, age_days,
                                           account=self.account)
        if state:
            self.emulator.set_snapshot_state(self.region, snapshot_id, state,
                                             account=self.account)
        return snapshot_id

    def job_snapshot(self, volume_id: str, job: str, age_days: float,
                     state: str | None = None) -> str:
        """A snapshot as an earlier run of `job` would have left it."""
        return self.snapshot(volume_id, {"CreatedBy": "molibackup", "molibackup:job": job,
                                         "molibackup:volume-id": volume_id,
                                         "Name": f"old-{age_days}d"},
                             age_days=age_days, state=state)

    def snapshots(self, **filters: str) -> list[dict[str, Any]]:
        """Our account's snapshots, without the emulator's built-in AMI ones."""
        aws_filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in filters.items()]
        pages = self.client.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=aws_filters)
        found = [s for page in pages for s in page["Snapshots"]]
        return [s for s in found if not s.get("Description", "").startswith("Auto-created")]

    def snapshot_ids(self) -> set[str]:
        return {s["SnapshotId"] for s in self.snapshots()}

    def job_snapshots(self, job: str) -> list[dict[str, Any]]:
        return self.snapshots(**{"molibackup:job": job})


def csi_volume(fleet: Fleet, namespace: str, claim: str, cluster: str = CLUSTER,
               attach_to: str | None = None, **extra: str) -> str:
    """A volume as the EBS CSI driver provisions it for a claim."""
    pv = f"pvc-{abs(hash((namespace, claim))) % 10**8:08d}"
    tags = {"kubernetes.io/created-for/pvc/namespace": namespace,
            "kubernetes.io/created-for/pvc/name": claim,
            "kubernetes.io/created-for/pv/name": pv, "CSIVolumeName": pv,
            "ebs.csi.aws.com/cluster": "true", f"kubernetes.io/cluster/{cluster}": "owned",
            **extra}
    if attach_to:
        return fleet.attached_volume(attach_to, tags)
    return fleet.volume(tags)
