"""The ebs-snapshot module itself: select, create, rotate."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

import botocore.exceptions

from molibackup import retention
from molibackup.aws import (
    AWS_ERRORS,
    ec2_client,
    error_code,
    error_message,
    explain,
    local_instance_id,
    paginate,
)
from molibackup.config import JobConfig
from molibackup.errors import JobError
from molibackup.log import register_secrets
from molibackup.modules.base import JobResult, RunContext
from molibackup.modules.ebs_snapshot.creator import Creator
from molibackup.modules.ebs_snapshot.options import Options
from molibackup.modules.ebs_snapshot.tagging import (
    CREATED_BY,
    JOB_TAG,
    VOLUME_TAG,
    Volume,
    filters_for_tags,
    is_owned_by,
    snapshot_name,
    snapshot_tags,
    tag_dict,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

INSTANCE_IDS_PER_CALL = 200  # EC2's limit on values of one filter


class Deletion(StrEnum):
    DELETED = "deleted"
    WOULD_DELETE = "would delete"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class Creation:
    volume: Volume
    snapshot_id: str | None = None
    error: str | None = None  # the snapshot was not created
    not_started: bool = False  # the run was interrupted before this volume's turn
    lock_error: str | None = None  # created, but not locked


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
        client = ec2_client(session, self.options.aws_region, context.settings)
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

        run_id = uuid.uuid4().hex
        # CreateSnapshot has no idempotency token: its retries are ours, so that an answer
        # lost after EC2 acted is looked for (by run id) instead of making a duplicate.
        creator = Creator(self.job.name, ec2_client(session, self.options.aws_region,
                                                    context.settings, max_attempts=1),
                          client, run_id, context)
        creations = self.create_snapshots(creator, volumes, context)
        for creation in creations:
            result.created += creation.snapshot_id is not None or (
                context.dry_run and creation.error is None and not creation.not_started)
            result.errors.extend(e for e in (creation.error, creation.lock_error) if e)
        failed_volumes = frozenset(c.volume.volume_id for c in creations if c.error)
        if context.stop.is_set():
            not_started = sum(c.not_started for c in creations)
            log.warning(f"run interrupted: {not_started} volume(s) not snapshotted; rotation "
                        "not started, nothing deleted")
            return result

        decisions = retention.plan(self.list_own_snapshots(client), context.now,
                                   self.options.policy, protected_volumes=failed_volumes)
        self.apply(client, decisions, result, context)
        return result

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
        snapshot_id, error = creator.create(volume, name, tags)
        if error is not None:
            message = f"volume {volume.volume_id} ({volume.name}): snapshot not created: {error}"
            log.error(message + "; its older snapshots are all kept")
            return Creation(volume, error=message)
        assert snapshot_id is not None
        log.info(f"created snapshot {snapshot_id} {name} of volume {volume.volume_id}")
        creation = Creation(volume, snapshot_id=snapshot_id)
        if self.options.lock:
            creation.lock_error = self.lock(creator.lookup_client, snapshot_id, context)
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

    # --- rotating -----------------------------------------------------------------------

    def list_own_snapshots(self, client: EC2Client) -> Iterator[retention.Snapshot]:
        """This job's snapshots, streamed; the tag filter is checked again on our side."""
        raw_snapshots = paginate(
            client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
            Filters=[{"Name": f"tag:{CREATED_BY[0]}", "Values": [CREATED_BY[1]]},
                     {"Name": f"tag:{JOB_TAG}", "Values": [self.job.name]}])
        for raw in raw_snapshots:
            tags = tag_dict(raw.get("Tags"))
            if not is_owned_by(tags, self.job.name):
                continue
            # Only what a decision needs, in compact form: 100,000 snapshots must fit in a
            # small pod. Volume ids and states repeat (interned); botocore's timestamps carry
            # a time zone object each, replaced by the shared UTC one.
            yield retention.Snapshot(
                snapshot_id=raw["SnapshotId"],
                volume_id=sys.intern(tags.get(VOLUME_TAG) or raw.get("VolumeId", "unknown")),
                start_time=raw["StartTime"].astimezone(UTC),
                state=sys.intern(raw.get("State", "completed")),
                name=tags.get("Name") or raw.get("Description", ""),
            )

    def apply(
        self, client: EC2Client, decisions: list[retention.Decision], result: JobResult,
        context: RunContext,
    ) -> None:
        log = context.log
        days = self.options.policy.retention_days
        to_delete = []
        for decision in decisions:
            snap = decision.snapshot
            if decision.delete:
                to_delete.append(decision)
            else:
                result.kept += 1
                log.info(f"kept snapshot {snap.snapshot_id} {snap.name} volume={snap.volume_id} "
                         f"age={decision.age_days} retention={days} ({decision.reason})")
        if not to_delete:
            return

        def delete(
            decision: retention.Decision,
        ) -> tuple[retention.Decision, Deletion, str | None]:
            return (decision, *self.delete_one(client, decision.snapshot.snapshot_id, context))

        with ThreadPoolExecutor(max_workers=context.settings.concurrency,
                                thread_name_prefix="delete") as pool:
            for decision, outcome, detail in pool.map(delete, to_delete):
                snap = decision.snapshot
                what = (f"snapshot {snap.snapshot_id} {snap.name} volume={snap.volume_id} "
                        f"age={decision.age_days} retention={days}")
                if outcome == Deletion.DELETED:
                    result.deleted += 1
                    log.info(f"deleted {what}{detail or ''}")
                elif outcome == Deletion.WOULD_DELETE:
                    result.deleted += 1
                    log.info(f"dry run: would delete {what}")
                elif outcome == Deletion.SKIPPED:
                    result.skipped += 1
                    log.warning(f"skipped {what}: {detail}")
                else:
                    message = f"could not delete {what}: {detail}"
                    result.errors.append(message)
                    log.error(message)

    def delete_one(
        self, client: EC2Client, snapshot_id: str, context: RunContext
    ) -> tuple[Deletion, str | None]:
        """What happened to the snapshot, and a detail for the log."""
        if context.stop.is_set():
            return Deletion.SKIPPED, "not deleted: the run was interrupted"
        if context.dry_run:
            return Deletion.WOULD_DELETE, None
        try:
            client.delete_snapshot(SnapshotId=snapshot_id)
        except AWS_ERRORS as exc:
            code, text = error_code(exc), error_message(exc)
            if code == "InvalidSnapshot.NotFound":
                return Deletion.DELETED, " (already gone)"
            if code == "InvalidSnapshot.InUse":
                return Deletion.SKIPPED, f"in use by an AMI ({text})"
            if "lock" in code.lower() or "lock" in text.lower():
                return Deletion.SKIPPED, f"locked against deletion ({text})"
            return Deletion.FAILED, explain(exc)
        return Deletion.DELETED, None
