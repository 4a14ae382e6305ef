"""The ebs-snapshot module itself: select, create, rotate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Self

import botocore.exceptions

from molibackup import retention
from molibackup.aws import (
    AWS_ERRORS,
    ec2_client,
    error_code,
    explain,
    local_instance_id,
    paginate,
)
from molibackup.config import JobConfig
from molibackup.durations import format_duration
from molibackup.errors import JobError
from molibackup.log import register_secrets
from molibackup.modules.base import JobResult, RunContext, VolumeBackup
from molibackup.modules.ebs_snapshot import inventory, rotation
from molibackup.modules.ebs_snapshot.creator import Creator, Made
from molibackup.modules.ebs_snapshot.options import Options
from molibackup.modules.ebs_snapshot.tagging import (
    Volume,
    filters_for_tags,
    snapshot_name,
    snapshot_tags,
    tag_dict,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

INSTANCE_IDS_PER_CALL = 200  # EC2's limit on values of one filter


@dataclass
class Creation:
    volume: Volume
    made: Made | None = None
    error: str | None = None  # the snapshot was not created
    not_started: bool = False  # the run was interrupted before this volume's turn
    lock_error: str | None = None  # created, but not locked


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


class EbsSnapshot:
    name: ClassVar[str] = "ebs-snapshot"
    #: Every EC2 action this module may call (the README's IAM policy grants exactly these).
    permissions: ClassVar[frozenset[str]] = frozenset({
        "ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
        "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:DeleteSnapshot", "ec2:LockSnapshot",
    })

    def __init__(self, job: JobConfig, options: Options) -> None:
        self.job = job
        self.options = options

    @classmethod
    def from_config(cls, job: JobConfig) -> Self:
        return cls(job, Options.from_job(job))

    # --- the run ------------------------------------------------------------------------

    def run(self, context: RunContext) -> JobResult:
        session = context.session_factory(self.job)
        client = ec2_client(session, self.options.aws_region, context.settings,
                            stats=context.stats)
        log = context.log
        result = context.result
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            register_secrets([frozen.secret_key, frozen.token])
        log.debug(f"region {self.options.aws_region}, endpoint {client.meta.endpoint_url}, "
                  f"credentials from {credentials.method if credentials else 'nowhere'}, "
                  f"retries {getattr(client.meta.config, 'retries', None)}")

        instance_id = self.options.instance_id
        if instance_id == "local":
            instance_id = local_instance_id(session)
            log.info(f"instance_id 'local' is {instance_id}")
        volumes = self.select_volumes(client, instance_id, context)
        if not volumes:
            what = self.describe_selection(instance_id)
            if not self.options.allow_empty:
                raise JobError(f"no volume matched ({what}): nothing would be backed up; fix the "
                               "selection, or set allow_empty: true if that is expected")
            log.warning(f"no volume matched ({what}); allow_empty is set, so this is not an error")

        inventory = self.take_inventory(client, volumes, context)
        to_snapshot = self.due_volumes(volumes, inventory, context)

        # CreateSnapshot has no idempotency token: its retries are ours, so that an answer
        # lost after EC2 acted is looked for (by run id) instead of making a duplicate.
        creator = Creator(self.job.name, ec2_client(session, self.options.aws_region,
                                                    context.settings, max_attempts=1,
                                                    stats=context.stats),
                          client, context.run_id, context)
        creations = self.create_snapshots(creator, to_snapshot, context)
        for creation in creations:
            result.created += creation.made is not None or (
                context.dry_run and creation.error is None and not creation.not_started)
            result.errors.extend(e for e in (creation.error, creation.lock_error) if e)
        failed_volumes = frozenset(c.volume.volume_id for c in creations if c.error)
        new = [retention.Snapshot(c.made.snapshot_id, c.volume.volume_id, c.made.start_time,
                                  c.made.state, snapshot_name(c.volume, context.now))
               for c in creations if c.made]
        result.volumes = backups_of(volumes, [*(inventory or []), *new])
        if context.stop.is_set():
            not_started = sum(c.not_started for c in creations)
            log.warning(f"run interrupted: {not_started} volume(s) not snapshotted; rotation "
                        "not started, nothing deleted")
            return result
        if inventory is None:
            log.error("rotation skipped: the job's snapshots could not be listed")
            return result

        decisions = retention.plan([*inventory, *new], context.now, self.options.policy,
                                   protected_volumes=failed_volumes)
        rotation.apply(client, decisions, self.options.policy, result, context)
        return result

    def coverage(self, context: RunContext) -> list[VolumeBackup]:
        session = context.session_factory(self.job)
        client = ec2_client(session, self.options.aws_region, context.settings,
                            stats=context.stats)
        instance_id = self.options.instance_id
        if instance_id == "local":
            instance_id = local_instance_id(session)
        volumes = self.select_volumes(client, instance_id, context)
        return backups_of(volumes, list(inventory.own_snapshots(client, self.job.name)))

    def take_inventory(self, client: EC2Client, volumes: list[Volume], context: RunContext
                       ) -> list[retention.Snapshot] | None:
        """The job's snapshots (and the original tool's, when adopting), listed before any
        is created. None when they cannot be listed: the backups are still made (unless
        min_interval needs the list), rotation is skipped, and the job fails."""
        try:
            owned = list(inventory.own_snapshots(client, self.job.name))
            if self.options.adopt_untagged and volumes:
                originals = inventory.untagged_originals(client, volumes)
                if originals:
                    owned += inventory.adopt(client, originals, context)
        except AWS_ERRORS as exc:
            message = f"could not list the job's snapshots: {explain(exc)}"
            if self.options.min_interval is not None:
                raise JobError(f"{message}; without them min_interval cannot be honoured, so "
                               "no snapshot was made") from None
            context.log.error(message)
            context.result.errors.append(message)
            return None
        return owned

    def due_volumes(self, volumes: list[Volume], snapshots: list[retention.Snapshot] | None,
                    context: RunContext) -> list[Volume]:
        """The volumes to snapshot now: all of them, but with min_interval those whose
        newest snapshot of this job (completed or pending) is older than that."""
        interval = self.options.min_interval
        if interval is None or snapshots is None:
            return volumes
        newest: dict[str, retention.Snapshot] = {}
        for snap in snapshots:
            if snap.state != retention.FAILED and (
                    snap.volume_id not in newest
                    or snap.start_time > newest[snap.volume_id].start_time):
                newest[snap.volume_id] = snap
        due = []
        for volume in volumes:
            recent = newest.get(volume.volume_id)
            if recent is not None and context.now - recent.start_time < interval:
                age = max(context.now - recent.start_time, timedelta(0))
                context.log.info(
                    f"volume {volume.volume_id} ({volume.name}): snapshot "
                    f"{recent.snapshot_id} ({recent.state}) is {format_duration(age)} old, "
                    f"within min_interval {format_duration(interval)}: backed up, no new "
                    "snapshot")
                context.result.recent += 1
            else:
                due.append(volume)
        return due

    def describe_selection(self, instance_id: str | None) -> str:
        parts = [f"region {self.options.aws_region}"]
        if instance_id:
            parts.append(f"instance {instance_id}")
        if self.options.instance_tags:
            parts.append(f"instance tags {dict(self.options.instance_tags)}")
        if self.options.volume_tags:
            parts.append(f"volume tags {dict(self.options.volume_tags)}")
        return ", ".join(parts)

    # --- selecting ----------------------------------------------------------------------

    def select_volumes(
        self, client: EC2Client, instance_id: str | None, context: RunContext
    ) -> list[Volume]:
        log = context.log
        volume_filters = filters_for_tags(self.options.volume_tags)
        if instance_id is None and not self.options.instance_tags:
            log.info(f"no instance_id or instance tags given: every instance in "
                     f"{self.options.aws_region} is in scope")
            raw_volumes = paginate(client, "describe_volumes", "Volumes", Filters=[
                {"Name": "attachment.status", "Values": ["attached"]}, *volume_filters])
            volumes = self.to_volumes(raw_volumes, instance_ids=None)
        else:
            instance_ids = self.find_instances(client, instance_id)
            shown = ", ".join(instance_ids[:20]) or "-"
            more = f" and {len(instance_ids) - 20} more" if len(instance_ids) > 20 else ""
            log.info(f"found {len(instance_ids)} instance(s): {shown}{more}")
            volumes = []
            for start in range(0, len(instance_ids), INSTANCE_IDS_PER_CALL):
                batch = instance_ids[start:start + INSTANCE_IDS_PER_CALL]
                raw_volumes = paginate(client, "describe_volumes", "Volumes", Filters=[
                    {"Name": "attachment.instance-id", "Values": batch}, *volume_filters])
                volumes.extend(self.to_volumes(raw_volumes, instance_ids=set(batch)))
        unique = {volume.volume_id: volume for volume in volumes}
        volumes = [unique[key] for key in sorted(unique)]
        log.info(f"found {len(volumes)} volume(s) to back up")
        for volume in volumes:
            log.info(f"volume {volume.volume_id} ({volume.name}) attached to "
                     f"{', '.join(volume.instance_ids)}")
        return volumes

    def find_instances(self, client: EC2Client, instance_id: str | None) -> list[str]:
        kwargs: dict[str, Any] = {"Filters": filters_for_tags(self.options.instance_tags)}
        if instance_id:
            kwargs["InstanceIds"] = [instance_id]
        try:
            reservations = list(paginate(client, "describe_instances", "Reservations", **kwargs))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc).startswith("InvalidInstanceID"):
                raise JobError(f"instance {instance_id} does not exist in region "
                               f"{self.options.aws_region} ({error_code(exc)})") from None
            raise
        ids = [instance["InstanceId"] for reservation in reservations
               for instance in reservation["Instances"]
               if self.tags_match(tag_dict(instance.get("Tags")), self.options.instance_tags)]
        return sorted(set(ids))

    @staticmethod
    def tags_match(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
        return all(tags.get(key) == value for key, value in wanted.items())

    def to_volumes(self, raw_volumes: Iterator[Any], instance_ids: set[str] | None) -> list[Volume]:
        """Volumes attached to the wanted instances, checked again here, not only by filter."""
        volumes = []
        for raw in raw_volumes:
            tags = tag_dict(raw.get("Tags"))
            if not self.tags_match(tags, self.options.volume_tags):
                continue
            attached_to = tuple(sorted(
                a["InstanceId"] for a in raw.get("Attachments", [])
                if a.get("State") == "attached"
                and (instance_ids is None or a["InstanceId"] in instance_ids)))
            if attached_to:
                volume_id = raw["VolumeId"]
                volumes.append(Volume(volume_id, tags.get("Name") or volume_id, attached_to, tags))
        return volumes

    # --- creating -----------------------------------------------------------------------

    def create_snapshots(
        self, creator: Creator, volumes: list[Volume], context: RunContext
    ) -> list[Creation]:
        if not volumes:
            return []

        def create(volume: Volume) -> Creation:
            return self.create_one(creator, volume, context)

        with ThreadPoolExecutor(max_workers=context.settings.concurrency,
                                thread_name_prefix="create") as pool:
            # map() yields in submission order, so the log reads volume by volume.
            return list(pool.map(create, volumes))

    def create_one(self, creator: Creator, volume: Volume, context: RunContext) -> Creation:
        log = context.log
        if context.stop.is_set():
            return Creation(volume, not_started=True)
        name = snapshot_name(volume, context.now)
        if context.dry_run:
            log.info(f"dry run: would create snapshot {name} of volume {volume.volume_id}")
            return Creation(volume)
        tags = snapshot_tags(volume, self.job.name, context.now, creator.run_id,
                             self.options.copy_volume_tags)
        made, error = creator.create(volume, name, tags)
        if error is not None:
            message = f"volume {volume.volume_id} ({volume.name}): snapshot not created: {error}"
            log.error(message + "; its older snapshots are all kept")
            return Creation(volume, error=message)
        assert made is not None
        log.info(f"created snapshot {made.snapshot_id} {name} of volume {volume.volume_id}")
        creation = Creation(volume, made=made)
        if self.options.lock:
            creation.lock_error = self.lock(creator.lookup_client, made.snapshot_id, context)
        return creation

    def lock(self, client: EC2Client, snapshot_id: str, context: RunContext) -> str | None:
        """Lock a new snapshot; an error message when that failed (the snapshot stays)."""
        assert self.options.lock is not None
        mode, days = self.options.lock.mode, self.options.lock.duration_days
        try:
            client.lock_snapshot(SnapshotId=snapshot_id, LockMode=mode,  # type: ignore[arg-type]
                                 LockDuration=days)
        except AWS_ERRORS as exc:
            message = f"snapshot {snapshot_id} created but not locked: {explain(exc)}"
            context.log.error(message)
            return message
        context.log.info(f"locked snapshot {snapshot_id} in {mode} mode for {days} day(s)")
        return None
