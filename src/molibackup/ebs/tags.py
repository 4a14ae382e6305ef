"""Every tag molibackup writes or reads, in one place: how snapshots and volumes are named
and tagged, how its own are recognised, and the CSI driver's tags of a Kubernetes claim."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagTypeDef

#: The prefix of every tag molibackup writes but CreatedBy; a copy never copies them over.
OWN_PREFIX = "molibackup:"
CREATED_BY = ("CreatedBy", "molibackup")
JOB_TAG = "molibackup:job"
VOLUME_TAG = "molibackup:volume-id"
INSTANCE_TAG = "molibackup:instance-id"
CREATED_AT_TAG = "molibackup:created-at"
RUN_TAG = "molibackup:run-id"
CLAIM_NAMESPACE_TAG = "molibackup:pvc-namespace"
CLAIM_NAME_TAG = "molibackup:pvc-name"
PV_NAME_TAG = "molibackup:pv-name"
CLUSTER_TAG = "molibackup:cluster"
#: What a restore needs of the volume: zone, type, size, IOPS, throughput, devices. One tag on
#: a volume's snapshot; on an instance's (one CreateSnapshots call, shared tags), one per
#: volume, `molibackup:restore:<volume id>`.
RESTORE_TAG = "molibackup:restore"
#: Where a copy came from (on copies in other regions and accounts).
SOURCE_SNAPSHOT_TAG = "molibackup:source-snapshot-id"
SOURCE_REGION_TAG = "molibackup:source-region"
SOURCE_ACCOUNT_TAG = "molibackup:source-account"
SOURCE_TIME_TAG = "molibackup:source-time"
#: On a source snapshot shared with another account: `molibackup:shared-with:<account>`.
SHARE_TAG_PREFIX = "molibackup:shared-with:"
#: The source's tags a copy carries too, so that a restore in its region finds what it needs.
RESTORE_KEYS = frozenset({CLAIM_NAMESPACE_TAG, CLAIM_NAME_TAG, PV_NAME_TAG, CLUSTER_TAG,
                          RUN_TAG, INSTANCE_TAG, CREATED_AT_TAG})

#: Application-consistent snapshots: how consistent, and how long the filesystems were frozen.
CONSISTENCY_TAG = "molibackup:consistency"
FREEZE_TAG = "molibackup:freeze-ms"

#: What a snapshot stores, cached by the report (EBS direct APIs are slow to count).
CHANGED_BYTES_TAG = "molibackup:changed-bytes"
FULL_BYTES_TAG = "molibackup:full-bytes"

#: Verification: the evidence left on a snapshot, and the tags of a verification volume.
VERIFIED_AT_TAG = "molibackup:verified-at"
VERIFIED_TAG = "molibackup:verified"
VERIFICATION_OF_TAG = "molibackup:verification-of"
VERIFY_JOB_TAG = "molibackup:verify-job"
VERIFY_STARTED_TAG = "molibackup:verify-started"

#: A restored volume. Never `molibackup:job` on it, so that no job takes the volume (or
#: snapshots of it) for its own: the job whose snapshot it is goes in RESTORED_FOR_JOB_TAG.
RESTORE_ID_TAG = "molibackup:restore-id"
RESTORED_FROM_TAG = "molibackup:restored-from"
RESTORED_FROM_VOLUME_TAG = "molibackup:restored-from-volume"
RESTORED_FOR_JOB_TAG = "molibackup:restored-for-job"
RESTORED_CLAIM_TAG = "molibackup:restored-claim"

#: Tags the EBS CSI driver puts on the volumes it provisions (with the external provisioner's
#: --extra-create-metadata, the default of the EKS add-on).
PVC_NAMESPACE = "kubernetes.io/created-for/pvc/namespace"
PVC_NAME = "kubernetes.io/created-for/pvc/name"
PV_NAME = "kubernetes.io/created-for/pv/name"
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
LEGACY_CLUSTER_TAG = "KubernetesCluster"

MAX_TAGS = 50  # EC2's limit per resource
MAX_DESCRIPTION = 255
MAX_TAG_VALUE = 256


@dataclass(frozen=True)
class Claim:
    """The Kubernetes PersistentVolumeClaim a volume was provisioned for."""

    namespace: str
    name: str
    pv_name: str
    cluster: str | None = None


@dataclass(frozen=True)
class VolumeShape:
    """What a restore needs to make the volume again as it was."""

    zone: str | None = None
    volume_type: str | None = None
    size_gib: int | None = None
    iops: int | None = None
    throughput: int | None = None
    devices: tuple[tuple[str, str], ...] = ()  # (instance id, device name) per attachment

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> VolumeShape:
        """The shape of a volume as DescribeVolumes describes it."""
        devices = tuple((str(a["InstanceId"]), str(a["Device"]))
                        for a in raw.get("Attachments", [])
                        if a.get("State") == "attached" and a.get("Device"))
        return cls(zone=raw.get("AvailabilityZone"), volume_type=raw.get("VolumeType"),
                   size_gib=raw.get("Size"), iops=raw.get("Iops"),
                   throughput=raw.get("Throughput"), devices=devices)

    def tag_value(self) -> str:
        """As one tag value: `az=us-west-2a type=gp3 size=100 iops=3000 throughput=125
        devices=i-0abc:/dev/sdf`, within EC2's 256 characters (devices last, cut first)."""
        parts = [f"{key}={value}" for key, value in (
            ("az", self.zone), ("type", self.volume_type), ("size", self.size_gib),
            ("iops", self.iops), ("throughput", self.throughput)) if value is not None]
        text = " ".join(parts)
        devices = ""
        for instance, device in self.devices:
            candidate = f"{devices},{instance}:{device}" if devices else f"{instance}:{device}"
            if len(text) + len(" devices=") + len(candidate) > MAX_TAG_VALUE:
                break
            devices = candidate
        return f"{text} devices={devices}" if devices else text

    @classmethod
    def from_tag(cls, value: str) -> VolumeShape:
        fields = dict(part.split("=", 1) for part in value.split() if "=" in part)

        def number(key: str) -> int | None:
            try:
                return int(fields[key]) if key in fields else None
            except ValueError:
                return None

        devices = tuple(tuple(item.split(":", 1)) for item in
                        fields.get("devices", "").split(",") if ":" in item)
        return cls(zone=fields.get("az"), volume_type=fields.get("type"),
                   size_gib=number("size"), iops=number("iops"),
                   throughput=number("throughput"),
                   devices=devices)  # type: ignore[arg-type]

    def device_on(self, instance_id: str) -> str | None:
        return next((device for instance, device in self.devices if instance == instance_id),
                    None)


@dataclass(frozen=True)
class Volume:
    volume_id: str
    name: str
    instance_ids: tuple[str, ...]
    tags: Mapping[str, str] = field(repr=False)
    boot: bool = False  # the root device of the instance it is attached to
    claim: Claim | None = None
    shape: VolumeShape = field(default_factory=VolumeShape)


def tag_dict(tags: list[Any] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


def filters_for_tags(tags: Mapping[str, str]) -> list[FilterTypeDef]:
    return [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_name(volume: Volume, moment: datetime) -> str:
    suffix = f"-{timestamp(moment)}"
    return volume.name[: MAX_DESCRIPTION - len(suffix)] + suffix


def tag_list(ours: Mapping[str, str], others: Mapping[str, str] | None = None,
             skip_prefixes: tuple[str, ...] = ("aws:",)) -> list[TagTypeDef]:
    """Our tags first (they decide ownership and what a restore needs), then others' (a
    volume's, a source snapshot's) up to EC2's 50, never overriding ours."""
    tags = dict(ours)
    for key, value in (others or {}).items():
        if key.startswith(skip_prefixes) or key in ours or len(tags) >= MAX_TAGS:
            continue
        tags[key] = value
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def run_tags(job_name: str, moment: datetime, run_id: str) -> dict[str, str]:
    """What every snapshot of a run carries: ownership, when and which run."""
    return {CREATED_BY[0]: CREATED_BY[1], JOB_TAG: job_name, CREATED_AT_TAG: timestamp(moment),
            RUN_TAG: run_id}


def claim_tags(claim: Claim | None) -> dict[str, str]:
    if claim is None:
        return {}
    tags = {CLAIM_NAMESPACE_TAG: claim.namespace, CLAIM_NAME_TAG: claim.name}
    if claim.pv_name:
        tags[PV_NAME_TAG] = claim.pv_name
    if claim.cluster:
        tags[CLUSTER_TAG] = claim.cluster
    return tags


def shape_tag(volume: Volume, per_volume: bool = False) -> dict[str, str]:
    key = f"{RESTORE_TAG}:{volume.volume_id}" if per_volume else RESTORE_TAG
    value = volume.shape.tag_value()
    return {key: value} if value else {}


def shape_in(tags: Mapping[str, str], volume_id: str) -> VolumeShape | None:
    """The recorded shape of `volume_id` in a snapshot's tags, if it has one."""
    value = tags.get(f"{RESTORE_TAG}:{volume_id}") or tags.get(RESTORE_TAG)
    return VolumeShape.from_tag(value) if value else None


def snapshot_tags(
    volume: Volume, job_name: str, moment: datetime, run_id: str, copy_volume_tags: bool, *,
    extra: Mapping[str, str] | None = None,
) -> list[TagTypeDef]:
    """The tags of one volume's snapshot; with copy_volume_tags, the volume's own after ours."""
    ours = {"Name": snapshot_name(volume, moment), **run_tags(job_name, moment, run_id),
            VOLUME_TAG: volume.volume_id, INSTANCE_TAG: ",".join(volume.instance_ids)[:256],
            **claim_tags(volume.claim), **shape_tag(volume), **(extra or {})}
    return tag_list(ours, volume.tags if copy_volume_tags else None)


def instance_snapshot_tags(instance_id: str, name: str, job_name: str, moment: datetime,
                           run_id: str, *, copy_volume_tags: bool,
                           volumes: tuple[Volume, ...] = (),
                           extra: Mapping[str, str] | None = None) -> list[TagTypeDef]:
    """The tags one CreateSnapshots call gives every snapshot of an instance. The volume is
    each snapshot's own VolumeId; with copy_volume_tags EC2 copies the volume's tags (its
    Name included), so ours leave Name out. The shape of each selected volume is a tag of
    its own, since all the call's snapshots share these tags."""
    ours = {"Name": name, **run_tags(job_name, moment, run_id), INSTANCE_TAG: instance_id,
            **(extra or {})}
    for volume in volumes:
        ours.update(shape_tag(volume, per_volume=True))
    if copy_volume_tags:
        del ours["Name"]
    return tag_list(ours)


def is_owned_by(tags: Mapping[str, str], job_name: str) -> bool:
    return tags.get(CREATED_BY[0]) == CREATED_BY[1] and tags.get(JOB_TAG) == job_name


def verified_at(tags: dict[str, str] | Any) -> datetime | None:
    value = tags.get(VERIFIED_AT_TAG)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None
