"""Deciding a restore: which snapshots, where (the job's region or a copy_to destination),
the new volumes' zone, type, size and tags, the instance to attach to. Every refusal is
made here, before the first change; nothing here changes anything."""

from __future__ import annotations

from datetime import datetime

from molibackup.aws.clients import caller_account, ec2_client
from molibackup.ebs.catalog import (
    SnapshotInfo,
    describe_snapshot,
    existing_volumes,
    job_copies,
    job_snapshots,
)
from molibackup.ebs.claims import RESTORED_UNUSED, claim_state
from molibackup.ebs.options import CopyTarget
from molibackup.ebs.restore import choosing
from molibackup.ebs.restore.request import Decision, Where
from molibackup.ebs.restore.shaping import Shaping
from molibackup.ebs.selection import Selector
from molibackup.ebs.tags import (
    CREATED_BY,
    JOB_TAG,
    tag_dict,
)


class Planner(Shaping):
    """Decides what a restore makes, and makes every refusal, reading only: which
    snapshots here, what each volume is to be in shaping.py."""

    def decide(self) -> Decision:
        where = self.where()
        snapshots, run_id = self.choose(where)
        restore_id, planned, claim = self.plan(where, snapshots)
        planned = self.attach_devices(where, planned, planned[0].spec.zone)
        return Decision(where, snapshots, run_id, restore_id, planned, claim)

    def where(self) -> Where:
        options = self.context.job.options
        session = self.context.job.session()
        if self.request.from_region is None:
            return Where(session, ec2_client(session, options.aws_region, self.settings),
                         options.aws_region, options.aws_region, None)
        targets = [t for t in options.copy_to if t.region == self.request.from_region]
        if not targets:
            regions = ", ".join(t.region for t in options.copy_to) or "none"
            raise self.problem(f"--from-region {self.request.from_region} is not one of the "
                               f"job's copy_to destinations (they are: {regions})")
        if len(targets) > 1:
            raise self.problem(f"the job copies to {self.request.from_region} in several "
                               f"accounts ({', '.join(t.describe() for t in targets)}): "
                               "restore from one with --snapshot and its id there")
        target: CopyTarget = targets[0]
        account = caller_account(session, options.aws_region)
        copy_session = self.context.job.destination(session, target)
        return Where(copy_session, ec2_client(copy_session, target.region, self.settings),
                     target.region, target.describe(), (options.aws_region, account))

    def catalog(self, where: Where) -> list[SnapshotInfo]:
        if where.copy_of is None:
            return job_snapshots(where.client, self.job)
        return job_copies(where.client, self.job, *where.copy_of)

    def moment(self) -> datetime | None:
        if self.request.at is None:
            return None
        try:
            return choosing.parse_moment(self.request.at, self.now,
                                         self.context.job.options.policy.timezone)
        except ValueError as exc:
            raise self.problem(f"--at: {exc}") from None

    def choose(self, where: Where) -> tuple[list[SnapshotInfo], str | None]:
        """The snapshots to restore, and for an instance the run they come from."""
        request, at = self.request, self.moment()
        if request.snapshot_id is not None:
            return [self.named_snapshot(where)], None
        snapshots = self.catalog(where)
        when = f" started at or before {at.isoformat()}" if at else ""
        if request.instance_id is not None:
            runs = choosing.runs_of_instance(snapshots, request.instance_id)
            if not runs:
                raise self.problem(f"the job has no snapshot of instance {request.instance_id} "
                                   f"in {where.label}: check the instance id and the job")
            run = choosing.newest_complete_run(runs, at)
            if run is None:
                raise self.problem(f"no run of the job snapshotted every volume of "
                                   f"{request.instance_id} to completion{when}")
            return list(run.snapshots), run.run_id
        if request.claims_namespace is not None:
            return self.namespace_run(snapshots, where, at)
        if request.volume_id is not None:
            mine = [s for s in snapshots if s.volume_id == request.volume_id]
            what = f"volume {request.volume_id}"
        else:
            assert request.claim is not None
            what = f"claim {request.claim[0]}/{request.claim[1]}"
            mine = self.claim_data([s for s in snapshots if s.claim == request.claim], where,
                                   what)
        if not mine:
            raise self.problem(f"the job has no snapshot of {what} in {where.label}: check "
                               "it with `molibackup snapshots`")
        chosen = choosing.newest_completed(mine, at)
        if chosen is None:
            raise self.problem(f"none of the job's {len(mine)} snapshot(s) of {what} is "
                               f"completed{when}")
        return [chosen], None

    def namespace_run(self, snapshots: list[SnapshotInfo], where: Where, at: datetime | None
                      ) -> tuple[list[SnapshotInfo], str]:
        """One snapshot of every claim of the namespace, all from one run: the newest run
        (at or before --at) that holds them all."""
        namespace = str(self.request.claims_namespace)
        mine = self.claim_data([s for s in snapshots if s.claim and s.claim[0] == namespace],
                               where, f"namespace {namespace}")
        every_run = choosing.claim_runs(mine, namespace)
        claims = self.claims_of(namespace, where) or sorted(
            {str(s.claim_text) for s in every_run[0].snapshots} if every_run else [])
        if not claims:
            raise self.problem(f"the job backs up no claim of namespace {namespace} in "
                               f"{where.label}: check the namespace with `molibackup "
                               "snapshots`")
        when = f" at or before {at.isoformat()}" if at else ""
        moment = choosing.namespace_moment(choosing.claim_runs(mine, namespace, at), claims)
        if moment.taken is None:
            newest_lacking = moment.passed_over[0][1] if moment.passed_over else tuple(claims)
            raise self.problem(f"no run{when} holds a completed snapshot of every claim of "
                               f"namespace {namespace}: missing "
                               f"{', '.join(newest_lacking)} (in the newest run)")
        for run, lacking in moment.passed_over:
            self.log.info(f"run {run.run_id} ({run.start_time.isoformat()}) passed over: it "
                          f"has no completed snapshot of {', '.join(lacking)}")
        taken = moment.taken
        self.log.info(f"namespace {namespace}: {len(taken.snapshots)} claim(s) from run "
                      f"{taken.run_id} ({taken.start_time.isoformat()}), the newest{when} "
                      "that holds them all")
        return list(taken.snapshots), taken.run_id

    def claims_of(self, namespace: str, where: Where) -> list[str]:
        """The claims of the namespace the job backs up now (its selection, less the
        restored copies never used); none when the restore reads a copy region (the home
        region's cluster may be what was lost) or the namespace is gone."""
        if where.copy_of is not None:
            return []
        job = self.context.job
        if job.options.claims is None:
            return []
        selector = Selector(job.options, where.client, self.log, job_name=job.name)
        selector.select(None)
        return sorted({volume.name for volume, state in selector.claim_volumes
                       if volume.claim is not None and volume.claim.namespace == namespace
                       and state != RESTORED_UNUSED})

    def claim_data(self, snapshots: list[SnapshotInfo], where: Where, what: str
                   ) -> list[SnapshotInfo]:
        """The claim's snapshots, less those of a restored copy never attached (claims.py):
        its data is the snapshot it came from, not the claim's."""
        if where.copy_of is not None or not snapshots:
            return snapshots  # copies: their volumes are in the source region
        attached_once = {s.volume_id for s in snapshots if s.shape and s.shape.devices}
        suspects = {s.volume_id for s in snapshots if s.volume_id not in attached_once}
        volumes = existing_volumes(where.client, suspects) if suspects else {}
        unused = {volume_id for volume_id, raw in volumes.items() if claim_state(
            tag_dict(raw.get("Tags")), any(a.get("State") == "attached"
                                           for a in raw.get("Attachments", [])),
            volume_id in attached_once) == RESTORED_UNUSED}
        for volume_id in sorted(unused):
            passed = sum(s.volume_id == volume_id for s in snapshots)
            self.log.warning(f"{what}: passed over {passed} snapshot(s) of {volume_id}, a "
                             "volume a restore made and that was never attached (its data is "
                             "the snapshot it came from, not the claim's)")
        kept = [s for s in snapshots if s.volume_id not in unused]
        # A run that found the claim on several volumes took the attached one as the claim
        # (it is the live one); the others of that run are not the claim's newest.
        attached_runs = {s.run_id for s in kept if s.run_id and s.shape and s.shape.devices}
        return [s for s in kept if s.run_id not in attached_runs
                or (s.shape is not None and s.shape.devices)]

    def named_snapshot(self, where: Where) -> SnapshotInfo:
        snapshot_id = str(self.request.snapshot_id)
        found = describe_snapshot(where.client, snapshot_id)
        if found is None:
            raise self.problem(f"snapshot {snapshot_id} does not exist in {where.label}")
        tags = found.tags
        if tags.get(CREATED_BY[0]) != CREATED_BY[1]:
            whose = "it was made by hand or by another tool (no CreatedBy=molibackup tag)"
        elif JOB_TAG not in tags:
            whose = "it was made by the original molibackup (no job tag; see adopt_untagged)"
        elif tags[JOB_TAG] != self.job:
            whose = f"it belongs to job {tags[JOB_TAG]}"
        elif where.copy_of is not None and found.source_snapshot_id is None:
            whose = f"it is not a copy the job made in {where.label}"
        else:
            if not found.completed:
                raise self.problem(f"snapshot {snapshot_id} is {found.state}, not completed")
            return found
        raise self.problem(f"snapshot {snapshot_id} is not a snapshot of job {self.job}: "
                           f"{whose}; restore only the job's own")
