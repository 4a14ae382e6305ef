"""The job's snapshots in one place: listed once by tag, in compact records.

Also adopts the snapshots of the original (Go) molibackup, when the job asks: those carry
``CreatedBy=molibackup`` but no job tag, so no job would ever rotate them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from molibackup import retention
from molibackup.aws.clients import ec2_client, paginate
from molibackup.durations import format_duration
from molibackup.ebs.catalog import job_snapshots
from molibackup.ebs.job import JobContext
from molibackup.ebs.selection import Selector
from molibackup.ebs.tags import (
    CHANGED_BYTES_TAG,
    CREATED_BY,
    JOB_TAG,
    VOLUME_TAG,
    Volume,
    is_owned_by,
    tag_dict,
    verified_at,
)
from molibackup.jobs import VolumeBackup

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client

VOLUME_IDS_PER_CALL = 200  # EC2's limit on values of one filter
RESOURCES_PER_TAG_CALL = 100


def record(raw: Any, tags: dict[str, str]) -> retention.Snapshot:
    """Only what a decision needs, in compact form: 100,000 snapshots must fit in a small
    pod. Volume ids and states repeat (interned); botocore's timestamps carry a time zone
    object each, replaced by the shared UTC one."""
    return retention.Snapshot(
        snapshot_id=raw["SnapshotId"],
        volume_id=sys.intern(tags.get(VOLUME_TAG) or raw.get("VolumeId") or "unknown"),
        start_time=raw["StartTime"].astimezone(UTC),
        state=sys.intern(raw.get("State", "completed")),
        name=tags.get("Name") or raw.get("Description", ""),
        storage_tier=sys.intern(str(raw.get("StorageTier") or "standard")),
        stored_bytes=stored_bytes(tags),
    )


def stored_bytes(tags: dict[str, str]) -> int | None:
    value = tags.get(CHANGED_BYTES_TAG)
    return int(value) if value and value.isdigit() else None


def own_snapshots(client: EC2Client, job_name: str) -> Iterator[retention.Snapshot]:
    """This job's snapshots, streamed; the tag filter is checked again on our side."""
    raw_snapshots = paginate(
        client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
        Filters=[{"Name": f"tag:{CREATED_BY[0]}", "Values": [CREATED_BY[1]]},
                 {"Name": f"tag:{JOB_TAG}", "Values": [job_name]}])
    for raw in raw_snapshots:
        tags = tag_dict(raw.get("Tags"))
        if is_owned_by(tags, job_name):
            yield record(raw, tags)


def untagged_originals(client: EC2Client, volumes: Iterable[Volume]) -> list[Any]:
    """Snapshots of these volumes made by the original molibackup: CreatedBy=molibackup,
    no job tag. Anything without CreatedBy=molibackup is never returned."""
    volume_ids = sorted({volume.volume_id for volume in volumes})
    found = []
    for start in range(0, len(volume_ids), VOLUME_IDS_PER_CALL):
        batch = volume_ids[start:start + VOLUME_IDS_PER_CALL]
        for raw in paginate(client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
                            Filters=[{"Name": f"tag:{CREATED_BY[0]}", "Values": [CREATED_BY[1]]},
                                     {"Name": "volume-id", "Values": batch}]):
            tags = tag_dict(raw.get("Tags"))
            if (tags.get(CREATED_BY[0]) == CREATED_BY[1] and JOB_TAG not in tags
                    and raw.get("VolumeId") in batch):
                found.append(raw)
    return found


def adopt(client: EC2Client, originals: list[Any], job: str, dry_run: bool, log: Logger
          ) -> list[retention.Snapshot]:
    """Tag the original tool's snapshots as this job's; the records of those now owned."""
    adopted: list[retention.Snapshot] = []
    by_volume: dict[str, list[Any]] = {}
    for raw in originals:
        by_volume.setdefault(raw["VolumeId"], []).append(raw)
    for volume_id, raws in sorted(by_volume.items()):
        for start in range(0, len(raws), RESOURCES_PER_TAG_CALL):
            batch = raws[start:start + RESOURCES_PER_TAG_CALL]
            ids = [raw["SnapshotId"] for raw in batch]
            if dry_run:
                log.info(f"dry run: would adopt {len(ids)} snapshot(s) of volume {volume_id} "
                         f"made by the original molibackup: {', '.join(ids)}")
            else:
                client.create_tags(Resources=ids, Tags=[
                    {"Key": JOB_TAG, "Value": job}, {"Key": VOLUME_TAG, "Value": volume_id}])
                log.info(f"adopted {len(ids)} snapshot(s) of volume {volume_id} made by the "
                         f"original molibackup: {', '.join(ids)}")
            adopted += [record(raw, {**tag_dict(raw.get("Tags")), VOLUME_TAG: volume_id})
                        for raw in batch]
    return adopted


def backups_of(volumes: list[Volume], snapshots: list[retention.Snapshot]) -> list[VolumeBackup]:
    """Each selected volume with its newest completed snapshot of the job."""
    newest: dict[str, retention.Snapshot] = {}
    pending: dict[str, int] = {}
    for snap in snapshots:
        if snap.state == retention.COMPLETED and (
                snap.volume_id not in newest
                or snap.start_time > newest[snap.volume_id].start_time):
            newest[snap.volume_id] = snap
        elif snap.state not in (retention.COMPLETED, retention.FAILED):
            pending[snap.volume_id] = pending.get(snap.volume_id, 0) + 1
    rows = []
    for volume in volumes:
        best = newest.get(volume.volume_id)
        rows.append(VolumeBackup(volume.volume_id, volume.name,
                                 best.start_time if best else None,
                                 best.snapshot_id if best else None,
                                 pending.get(volume.volume_id, 0)))
    return rows


def due_volumes(volumes: list[Volume], snapshots: list[retention.Snapshot],
                interval: timedelta, now: datetime, log: Logger) -> tuple[list[Volume], int]:
    """The volumes to snapshot now: those whose newest snapshot of this job (completed or
    pending; a failed one does not count) is older than min_interval; and how many are
    recent enough."""
    newest: dict[str, retention.Snapshot] = {}
    for snap in snapshots:
        if snap.state != retention.FAILED and (
                snap.volume_id not in newest
                or snap.start_time > newest[snap.volume_id].start_time):
            newest[snap.volume_id] = snap
    due = []
    for volume in volumes:
        recent = newest.get(volume.volume_id)
        if recent is not None and now - recent.start_time < interval:
            age = max(now - recent.start_time, timedelta(0))
            log.info(
                f"volume {volume.volume_id} ({volume.name}): snapshot {recent.snapshot_id} "
                f"({recent.state}) is {format_duration(age)} old, within min_interval "
                f"{format_duration(interval)}: backed up, no new snapshot")
        else:
            due.append(volume)
    return due, len(volumes) - len(due)


def coverage(context: JobContext) -> list[VolumeBackup]:
    """What the job would back up, with its newest backups and when each volume was last
    verified; reads only."""
    job = context.job
    client = ec2_client(job.session(), job.region, context.settings)
    selector = Selector(job.options, client, context.log, job_name=job.name)
    volumes = selector.select(job.instance_id())
    snapshots = job_snapshots(client, job.name)
    verified: dict[str, datetime] = {}
    for snapshot in snapshots:
        moment = verified_at(snapshot.tags)
        if moment is not None:
            verified[snapshot.volume_id] = max(moment, verified.get(snapshot.volume_id, moment))
    return [dataclasses.replace(backup, verified_at=verified.get(backup.volume_id))
            for backup in backups_of(volumes, [s.record() for s in snapshots])]
