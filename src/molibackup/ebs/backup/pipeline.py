"""The backup run: the order of its stages.

select (selection.py) -> list the job's snapshots, adopting the original tool's, and skip
the volumes within min_interval (inventory.py) -> create, per volume or per instance
(creation.py, through snapshotter.py) -> plan (retention.py) -> delete (rotation.py) ->
archive (tiering.py) -> copy to other regions and accounts, and rotate there (copier.py).

Unless min_interval or adoption needs it first, the listing of the job's snapshots runs
alongside the creation: the first snapshot is asked for as soon as the volumes are known,
not after a listing that may take many pages.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import boto3

from molibackup import retention
from molibackup.aws.clients import caller_account, ec2_client
from molibackup.aws.clients import client as aws_client
from molibackup.ebs import inventory
from molibackup.ebs.backup import copier, rotation, tiering
from molibackup.ebs.backup.creation import Creation, Creations
from molibackup.ebs.backup.hooked import HookedCreations
from molibackup.ebs.backup.hooks import HookRunner
from molibackup.ebs.backup.snapshotter import Snapshotter
from molibackup.ebs.catalog import gone_volumes
from molibackup.ebs.inventory import backups_of, due_volumes
from molibackup.ebs.job import Clients, EbsJob, JobContext
from molibackup.ebs.selection import Selector, attached_data_volume_ids
from molibackup.ebs.tags import Volume, snapshot_name
from molibackup.errors import AwsError, JobError
from molibackup.jobs import JobResult

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a target's run works with: its EC2 client, the client for CreateSnapshot(s)
    being made, and the thread that lists the job's snapshots."""

    client: EC2Client
    creator: Future[EC2Client]
    pool: ThreadPoolExecutor


class Backup:
    """The backup run of one job in one target."""

    def __init__(self, job: EbsJob) -> None:
        self.job = job
        self.options = job.options

    # --- the run ------------------------------------------------------------------------

    def run(self, context: JobContext, result: JobResult) -> None:
        session = self.job.session()
        region = self.options.aws_region
        client = ec2_client(session, region, context.settings, stats=result.stats)
        context.log.debug(f"region {region}, endpoint {client.meta.endpoint_url}, "
                          f"retries {getattr(client.meta.config, 'retries', None)}")
        result.copying = bool(self.options.copy_to)
        with ThreadPoolExecutor(1, thread_name_prefix="inventory") as pool:
            # CreateSnapshot(s) has no idempotency token: its retries are ours, so that an
            # answer lost after EC2 acted is looked for (by run id) instead of making a
            # duplicate. Its client is made while the selection's calls are in flight: a
            # client costs the CPU of a dozen calls, and a job's targets start together.
            creator = pool.submit(ec2_client, session, region, context.settings, attempts=1,
                                  stats=result.stats)
            self.run_stages(session, Stage(client, creator, pool), context, result)

    def run_stages(self, session: boto3.Session, stage: Stage, context: JobContext,
                   result: JobResult) -> None:
        region = self.options.aws_region
        client, pool = stage.client, stage.pool
        volumes, root_devices = self.select(client, context.log)
        # After the selection, which is what the first create waits for (and whose calls
        # share EC2's rate of describe calls with the listing's pages).
        listing = pool.submit(self.list_owned, client, context)
        first = self.options.min_interval is not None or self.options.adopt_untagged
        owned = self.take_inventory(client, volumes, listing, context, result) if first else None
        to_snapshot = volumes
        if self.options.min_interval is not None and owned is not None:
            to_snapshot, result.recent = due_volumes(volumes, owned, self.options.min_interval,
                                                     context.now, context.log)

        clients = Clients(main=client, create=stage.creator.result())
        attached = (attached_data_volume_ids(client, to_snapshot, root_devices)
                    if self.options.consistency == "instance" and not context.dry_run else None)
        creations = self.creations(session, clients, context, result).run(to_snapshot,
                                                                          attached)
        new = self.count_creations(creations, context, result)
        if not first:
            owned = self.take_inventory(client, volumes, listing, context, result)
            if owned is not None:  # listed while creating: this run's own may be in it
                made = {s.snapshot_id for s in new}
                owned = [s for s in owned if s.snapshot_id not in made]
        result.volumes = backups_of(volumes, [*(owned or []), *new])
        if context.stop.is_set():
            not_started = sum(c.not_started for c in creations)
            context.log.warning(f"run interrupted: {not_started} volume(s) not snapshotted; "
                                "rotation not started, nothing deleted")
            return
        if owned is None:
            context.log.error("rotation skipped: the job's snapshots could not be listed")
            return

        failed_volumes = frozenset(c.volume.volume_id for c in creations if c.error)
        decisions = retention.plan([*owned, *new], context.now, self.options.policy,
                                   protected_volumes=failed_volumes,
                                   unprotected_volumes=self.aged_orphans(
                                       client, volumes, owned, context, result))
        rotation.apply(client, decisions, self.options.policy, result, context)
        kept = [d.snapshot for d in decisions if not d.delete]
        result.tiers = dict(Counter(s.storage_tier for s in kept))
        sized = [s.stored_bytes for s in kept if s.stored_bytes is not None]
        result.stored_bytes = sum(sized) if sized else None
        if self.options.archive_after_days is not None:
            tiering.archive(client, decisions, self.options.archive_after_days, result, context)
        if self.options.copy_to:
            kept = [d.snapshot for d in decisions if not d.delete]
            source = copier.Source(session, client, region, caller_account(session, region))
            copier.copy_everywhere(source, kept, context, result, self.options.copy_to)

    def creations(self, session: boto3.Session, clients: Clients, context: JobContext,
                  result: JobResult) -> Creations | HookedCreations:
        """The creation stage; with hooks, each instance's snapshots between its pre and post
        (the SSM client is made only then)."""
        plain = Creations(self.options, Snapshotter(clients, context), context)
        if self.options.hooks is None:
            return plain
        ssm = aws_client(session, "ssm", self.options.aws_region, context.settings,
                         stats=result.stats)
        runner = HookRunner(ssm, context.log, self.options.hooks.timeout,
                            f"molibackup {self.job.name} {context.run_id}")
        return HookedCreations(plain, self.options.hooks, runner)

    @staticmethod
    def count_creations(creations: list[Creation], context: JobContext, result: JobResult
                        ) -> list[retention.Snapshot]:
        """Count what was created (or would be, in a dry run); the new snapshots' records."""
        for creation in creations:
            result.created += creation.made is not None or (
                context.dry_run and creation.error is None and not creation.not_started)
            result.errors.extend(creation.errors)
        return [retention.Snapshot(c.made.snapshot_id, c.volume.volume_id, c.made.start_time,
                                   c.made.state, snapshot_name(c.volume, context.now))
                for c in creations if c.made]

    def select(self, client: EC2Client, log: Logger
               ) -> tuple[list[Volume], dict[str, str | None]]:
        """The volumes to back up, and the root device of each instance seen."""
        instance_id = self.job.instance_id(log)
        selector = Selector(self.options, client, log, purpose="to back up",
                            job_name=self.job.name)
        volumes = selector.select(instance_id)
        if not volumes:
            what = selector.describe(instance_id)
            if not self.options.allow_empty:
                raise JobError(f"no volume matched ({what}): nothing would be backed up; fix the "
                               "selection, or set allow_empty: true if that is expected")
            log.warning(f"no volume matched ({what}); allow_empty is set, so this is not an "
                        "error")
        return volumes, selector.root_devices

    def aged_orphans(self, client: EC2Client, volumes: list[Volume],
                     owned: list[retention.Snapshot], context: JobContext, result: JobResult
                     ) -> frozenset[str]:
        """The orphans (volumes with snapshots of the job it no longer selects), counted;
        of them, those gone whose newest snapshot is older than orphan_retention."""
        selected = {v.volume_id for v in volumes}
        newest: dict[str, datetime] = {}
        for snapshot in owned:
            if snapshot.volume_id not in selected:
                newest[snapshot.volume_id] = max(snapshot.start_time, newest.get(
                    snapshot.volume_id, snapshot.start_time))
        result.orphans = len(newest)
        days = self.options.orphan_retention_days
        if days is None or not newest:
            return frozenset()
        try:
            gone = gone_volumes(client, newest)
        except AwsError as exc:
            context.log.warning(f"could not tell which volumes are gone ({exc}): "
                                "orphan_retention not applied in this run")
            return frozenset()
        aged = {v for v in gone if context.now - newest[v] > timedelta(days=days)}
        for volume_id in sorted(aged):
            context.log.info(f"volume {volume_id} no longer exists and its newest snapshot is "
                             f"older than orphan_retention {days}d: min_keep no longer "
                             "protects its snapshots")
        return frozenset(aged)

    def list_owned(self, client: EC2Client, context: JobContext) -> list[retention.Snapshot]:
        """The job's snapshots; a run being stopped stops listing them (it rotates nothing,
        and should not wait for the rest of many pages)."""
        owned = []
        for snapshot in inventory.own_snapshots(client, self.job.name):
            if context.stop.is_set():
                break
            owned.append(snapshot)
        return owned

    def take_inventory(self, client: EC2Client, volumes: list[Volume],
                       listing: Future[list[retention.Snapshot]], context: JobContext,
                       result: JobResult) -> list[retention.Snapshot] | None:
        """The job's snapshots (and the original tool's, when adopting). None when they
        cannot be listed: the backups are still made (unless min_interval needs the list),
        rotation is skipped, and the job fails."""
        try:
            owned = listing.result()
            if self.options.adopt_untagged and volumes:
                originals = inventory.untagged_originals(client, volumes)
                if originals:
                    owned += inventory.adopt(client, originals, self.job.name, context.dry_run,
                                             context.log)
        except AwsError as exc:
            message = f"could not list the job's snapshots: {exc}"
            if self.options.min_interval is not None:
                raise JobError(f"{message}; without them min_interval cannot be honoured, so "
                               "no snapshot was made") from None
            context.log.error(message)
            result.errors.append(message)
            return None
        return owned
