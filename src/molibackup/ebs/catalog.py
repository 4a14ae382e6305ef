"""The job's snapshots as `snapshots` and `restore` see them: every detail, and its copies.

Reads only. Rotation works on compact records (inventory.py); these carry the tags, tier,
size and what a restore needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from molibackup import retention
from molibackup.aws.clients import ec2_client, paginate
from molibackup.ebs.job import JobContext
from molibackup.ebs.tags import (
    CLAIM_NAME_TAG,
    CLAIM_NAMESPACE_TAG,
    CREATED_BY,
    INSTANCE_TAG,
    JOB_TAG,
    RUN_TAG,
    SOURCE_ACCOUNT_TAG,
    SOURCE_REGION_TAG,
    SOURCE_SNAPSHOT_TAG,
    SOURCE_TIME_TAG,
    VOLUME_TAG,
    VolumeShape,
    is_owned_by,
    shape_in,
    tag_dict,
)
from molibackup.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

IDS_PER_CALL = 200  # EC2's limit on values of one filter, and a safe SnapshotIds batch


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of the job (or a copy of one, dated by its source)."""

    snapshot_id: str
    volume_id: str
    start_time: datetime
    state: str
    storage_tier: str
    size_gib: int
    name: str
    encrypted: bool
    tags: Mapping[str, str] = field(repr=False)

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> SnapshotInfo:
        tags = tag_dict(raw.get("Tags"))
        started = raw["StartTime"]
        if tags.get(SOURCE_TIME_TAG):  # a copy: its data is from its source's moment
            with contextlib.suppress(ValueError):
                started = datetime.fromisoformat(tags[SOURCE_TIME_TAG].replace("Z", "+00:00"))
        return cls(snapshot_id=str(raw["SnapshotId"]),
                   volume_id=tags.get(VOLUME_TAG) or str(raw.get("VolumeId") or "unknown"),
                   start_time=started.astimezone(UTC), state=str(raw.get("State", "completed")),
                   storage_tier=str(raw.get("StorageTier") or "standard"),
                   size_gib=int(raw.get("VolumeSize") or 0),
                   name=tags.get("Name") or str(raw.get("Description", "")),
                   encrypted=bool(raw.get("Encrypted")), tags=tags)

    @property
    def claim(self) -> tuple[str, str] | None:
        namespace, name = self.tags.get(CLAIM_NAMESPACE_TAG), self.tags.get(CLAIM_NAME_TAG)
        return (namespace, name) if namespace and name else None

    @property
    def claim_text(self) -> str | None:
        return f"{self.claim[0]}/{self.claim[1]}" if self.claim else None

    @property
    def run_id(self) -> str | None:
        return self.tags.get(RUN_TAG)

    @property
    def instance_ids(self) -> tuple[str, ...]:
        return tuple(i for i in self.tags.get(INSTANCE_TAG, "").split(",") if i)

    @property
    def source_snapshot_id(self) -> str | None:
        """For a copy, the snapshot it copies."""
        return self.tags.get(SOURCE_SNAPSHOT_TAG)

    @property
    def shape(self) -> VolumeShape | None:
        return shape_in(self.tags, self.volume_id)

    @property
    def completed(self) -> bool:
        return self.state == retention.COMPLETED

    def record(self) -> retention.Snapshot:
        return retention.Snapshot(self.snapshot_id, self.volume_id, self.start_time,
                                  self.state, self.name, self.storage_tier)


def _job_filters(job_name: str) -> list[Any]:
    return [{"Name": f"tag:{CREATED_BY[0]}", "Values": [CREATED_BY[1]]},
            {"Name": f"tag:{JOB_TAG}", "Values": [job_name]}]


def job_snapshots(client: EC2Client, job_name: str) -> list[SnapshotInfo]:
    """The job's own snapshots where `client` is (copies of them excluded), newest first."""
    found = [SnapshotInfo.of(raw) for raw in paginate(
        client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
        Filters=_job_filters(job_name)) if is_owned_by(tag_dict(raw.get("Tags")), job_name)]
    return newest_first(s for s in found if s.source_snapshot_id is None)


def job_copies(client: EC2Client, job_name: str, source_region: str, source_account: str
               ) -> list[SnapshotInfo]:
    """The job's copies in a destination, of snapshots of `source_region`/`source_account`."""
    found = []
    for raw in paginate(client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
                        Filters=_job_filters(job_name)):
        tags = tag_dict(raw.get("Tags"))
        if (is_owned_by(tags, job_name) and tags.get(SOURCE_SNAPSHOT_TAG)
                and tags.get(SOURCE_REGION_TAG) == source_region
                and tags.get(SOURCE_ACCOUNT_TAG) == source_account):
            found.append(SnapshotInfo.of(raw))
    return newest_first(found)


def describe_snapshot(client: EC2Client, snapshot_id: str) -> SnapshotInfo | None:
    """One snapshot by id, whoever made it; None when there is no such snapshot."""
    try:
        answer = client.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    except AwsError as exc:
        if exc.code.startswith("InvalidSnapshot"):
            return None
        raise
    return SnapshotInfo.of(answer[0]) if answer else None


def owned_snapshot(context: JobContext, snapshot_id: str) -> SnapshotInfo | None:
    """The snapshot, if it exists in the job's target and is the job's own."""
    job = context.job
    found = describe_snapshot(ec2_client(job.session(), job.region, context.settings),
                              snapshot_id)
    return found if found is not None and is_owned_by(found.tags, job.name) else None


def newest_first(snapshots: Iterable[SnapshotInfo]) -> list[SnapshotInfo]:
    return sorted(snapshots, key=lambda s: (s.start_time, s.snapshot_id), reverse=True)


def existing_volumes(client: EC2Client, volume_ids: Iterable[str]) -> dict[str, Any]:
    """The volumes of these ids that exist, as DescribeVolumes describes them. A filter, not
    VolumeIds, so that one missing volume does not fail the lookup of the others."""
    wanted = sorted(set(volume_ids))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), IDS_PER_CALL):
        batch = wanted[start:start + IDS_PER_CALL]
        for raw in paginate(client, "describe_volumes", "Volumes",
                            Filters=[{"Name": "volume-id", "Values": batch}]):
            if raw["VolumeId"] in batch:
                found[raw["VolumeId"]] = raw
    return found


def locked_snapshot_ids(client: EC2Client, snapshot_ids: Iterable[str]) -> set[str]:
    """The snapshots among these that carry an EBS snapshot lock."""
    wanted = sorted(set(snapshot_ids))
    locked: set[str] = set()
    for start in range(0, len(wanted), IDS_PER_CALL):
        answer = client.describe_locked_snapshots(SnapshotIds=wanted[start:start + IDS_PER_CALL])
        locked |= {str(raw["SnapshotId"]) for raw in answer.get("Snapshots", [])
                   if raw.get("LockState") != "expired"}
    return locked


def gone_volumes(client: EC2Client, volume_ids: Iterable[str]) -> set[str]:
    """The volumes among these that DescribeVolumes says do not exist. A lookup that fails
    raises (AwsError): a failed lookup never counts as gone."""
    wanted = set(volume_ids)
    return wanted - set(existing_volumes(client, wanted)) if wanted else set()
