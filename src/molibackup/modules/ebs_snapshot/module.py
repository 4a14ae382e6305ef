"""The ebs-snapshot module: the order of its stages, and the job's result.

select (selection.py) -> list the job's snapshots, adopting the original tool's, and skip
the volumes within min_interval (inventory.py) -> create, per volume or per instance
(creation.py) -> plan (retention.py) -> delete (rotation.py) -> archive (tiering.py) ->
copy to other regions and accounts, and rotate there (copier.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar, Self

from molibackup import retention
from molibackup.aws import (
    AWS_ERRORS,
    caller_account,
    ec2_client,
    explain,
    local_instance_id,
)
from molibackup.config import JobConfig
from molibackup.errors import JobError
from molibackup.log import register_secrets
from molibackup.modules.base import JobResult, RunContext, VolumeBackup
from molibackup.modules.ebs_snapshot import copier, inventory, rotation, tiering
from molibackup.modules.ebs_snapshot.creation import Creations
from molibackup.modules.ebs_snapshot.creator import Creator
from molibackup.modules.ebs_snapshot.inventory import backups_of, due_volumes
from molibackup.modules.ebs_snapshot.options import Options
from molibackup.modules.ebs_snapshot.selection import Selector, attached_data_volume_ids
from molibackup.modules.ebs_snapshot.tagging import Volume, snapshot_name

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_ec2 import EC2Client


class EbsSnapshot:
    name: ClassVar[str] = "ebs-snapshot"
    #: Every EC2 action this module may call (the README's IAM policy grants exactly these).
    permissions: ClassVar[frozenset[str]] = frozenset({
        "ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
        "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CreateTags", "ec2:DeleteSnapshot",
        "ec2:LockSnapshot", "ec2:ModifySnapshotTier", "ec2:CopySnapshot",
        "ec2:ModifySnapshotAttribute", "ec2:DeleteTags", "sts:AssumeRole",
    })

    def __init__(self, job: JobConfig, options: Options) -> None:
        self.job = job
        self.options = options

    @classmethod
    def from_config(cls, job: JobConfig) -> Self:
        return cls(job, Options.from_job(job))

    @property
    def min_interval(self) -> timedelta | None:
        return self.options.min_interval

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

        result.copying = bool(self.options.copy_to)
        volumes, root_devices = self.select(session, client, context)
        owned = self.take_inventory(client, volumes, context)
        to_snapshot = (volumes if self.options.min_interval is None or owned is None
                       else due_volumes(volumes, owned, self.options.min_interval, context))

        # CreateSnapshot(s) has no idempotency token: its retries are ours, so that an answer
        # lost after EC2 acted is looked for (by run id) instead of making a duplicate.
        creator = Creator(self.job.name, ec2_client(session, self.options.aws_region,
                                                    context.settings, max_attempts=1,
                                                    stats=context.stats),
                          client, context.run_id, context)
        attached = (attached_data_volume_ids(client, to_snapshot, root_devices)
                    if self.options.consistency == "instance" and not context.dry_run else None)
        creations = Creations(self.job.name, self.options, creator, context).run(
            to_snapshot, attached)
        for creation in creations:
            result.created += creation.made is not None or (
                context.dry_run and creation.error is None and not creation.not_started)
            result.errors.extend(e for e in (creation.error, creation.lock_error) if e)
        failed_volumes = frozenset(c.volume.volume_id for c in creations if c.error)
        new = [retention.Snapshot(c.made.snapshot_id, c.volume.volume_id, c.made.start_time,
                                  c.made.state, snapshot_name(c.volume, context.now))
               for c in creations if c.made]
        result.volumes = backups_of(volumes, [*(owned or []), *new])
        if context.stop.is_set():
            not_started = sum(c.not_started for c in creations)
            log.warning(f"run interrupted: {not_started} volume(s) not snapshotted; rotation "
                        "not started, nothing deleted")
            return result
        if owned is None:
            log.error("rotation skipped: the job's snapshots could not be listed")
            return result

        decisions = retention.plan([*owned, *new], context.now, self.options.policy,
                                   protected_volumes=failed_volumes)
        rotation.apply(client, decisions, self.options.policy, result, context)
        if self.options.archive_after_days is not None:
            tiering.archive(client, decisions, self.options.archive_after_days, result, context)
        if self.options.copy_to:
            kept = [d.snapshot for d in decisions if not d.delete]
            source = copier.Source(session, client, self.options.aws_region,
                                   caller_account(session, self.options.aws_region))
            copier.copy_everywhere(source, kept, context, self.options.copy_to)
        return result

    def select(self, session: boto3.Session, client: EC2Client, context: RunContext
               ) -> tuple[list[Volume], dict[str, str | None]]:
        """The volumes to back up, and the root device of each instance seen."""
        instance_id = self.options.instance_id
        if instance_id == "local":
            instance_id = local_instance_id(session)
            context.log.info(f"instance_id 'local' is {instance_id}")
        selector = Selector(self.options, client, context)
        volumes = selector.select(instance_id)
        if not volumes:
            what = selector.describe(instance_id)
            if not self.options.allow_empty:
                raise JobError(f"no volume matched ({what}): nothing would be backed up; fix the "
                               "selection, or set allow_empty: true if that is expected")
            context.log.warning(f"no volume matched ({what}); allow_empty is set, so this is "
                                "not an error")
        return volumes, selector.root_devices

    def coverage(self, context: RunContext) -> list[VolumeBackup]:
        session = context.session_factory(self.job)
        client = ec2_client(session, self.options.aws_region, context.settings,
                            stats=context.stats)
        instance_id = self.options.instance_id
        if instance_id == "local":
            instance_id = local_instance_id(session)
        volumes = Selector(self.options, client, context).select(instance_id)
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
