"""How the module names and tags snapshots, and how it recognises its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagTypeDef

CREATED_BY = ("CreatedBy", "molibackup")
JOB_TAG = "molibackup:job"
VOLUME_TAG = "molibackup:volume-id"
INSTANCE_TAG = "molibackup:instance-id"
CREATED_AT_TAG = "molibackup:created-at"
RUN_TAG = "molibackup:run-id"
CLAIM_NAMESPACE_TAG = "molibackup:pvc-namespace"
CLAIM_NAME_TAG = "molibackup:pvc-name"
PV_NAME_TAG = "molibackup:pv-name"
MAX_TAGS = 50  # EC2's limit per resource
MAX_DESCRIPTION = 255


@dataclass(frozen=True)
class Claim:
    """The Kubernetes PersistentVolumeClaim a volume was provisioned for."""

    namespace: str
    name: str
    pv_name: str


@dataclass(frozen=True)
class Volume:
    volume_id: str
    name: str
    instance_ids: tuple[str, ...]
    tags: Mapping[str, str] = field(repr=False)
    boot: bool = False  # the root device of the instance it is attached to
    claim: Claim | None = None


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
    return tags


def snapshot_tags(
    volume: Volume, job_name: str, moment: datetime, run_id: str, copy_volume_tags: bool
) -> list[TagTypeDef]:
    """The tags of one volume's snapshot; with copy_volume_tags, the volume's own after ours."""
    ours = {"Name": snapshot_name(volume, moment), **run_tags(job_name, moment, run_id),
            VOLUME_TAG: volume.volume_id, INSTANCE_TAG: ",".join(volume.instance_ids)[:256],
            **claim_tags(volume.claim)}
    return tag_list(ours, volume.tags if copy_volume_tags else None)


def instance_snapshot_tags(instance_id: str, name: str, job_name: str, moment: datetime,
                           run_id: str, *, copy_volume_tags: bool) -> list[TagTypeDef]:
    """The tags one CreateSnapshots call gives every snapshot of an instance. The volume is
    each snapshot's own VolumeId; with copy_volume_tags EC2 copies the volume's tags (its
    Name included), so ours leave Name out."""
    ours = {"Name": name, **run_tags(job_name, moment, run_id), INSTANCE_TAG: instance_id}
    if copy_volume_tags:
        del ours["Name"]
    return tag_list(ours)


def is_owned_by(tags: Mapping[str, str], job_name: str) -> bool:
    return tags.get(CREATED_BY[0]) == CREATED_BY[1] and tags.get(JOB_TAG) == job_name
