"""Giving a backup back: a volume (or an instance's set) made from the job's snapshots.

Everything a restore decides is decided, and every refusal made, before the first change
(planning.py). Then: the archive tier, the volumes (made once, see volumes.py), the wait,
the attachment, the claim's manifests. A restore never modifies, retags or deletes a
snapshot, and never touches a volume it did not make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

from molibackup.aws.clients import ec2_client, max_attempts
from molibackup.ebs.catalog import (
    SnapshotInfo,
)
from molibackup.ebs.job import Clients, JobContext
from molibackup.ebs.recovery import SendOnce
from molibackup.ebs.restore import choosing
from molibackup.ebs.restore.manifests import SnapshotHandoff, render, render_snapshots
from molibackup.ebs.restore.planning import Planner
from molibackup.ebs.restore.request import RestoreRequest, RestoreResult, Step, Where
from molibackup.ebs.volumes import VolumeMaker
from molibackup.errors import AwsError, JobError

if TYPE_CHECKING:
    pass


ARCHIVE = "archive"
RESTORED_STATES = ("temporary-restore-completed", "permanent-restore-completed")


class Restore(Step):
    """Carries a decided restore out: the archive tier, the volumes (made once, see
    volumes.py), the wait, the attachment, the claim's manifests."""

    def run(self) -> RestoreResult:
        if self.request.as_snapshots:
            return self.hand_over()
        decision = Planner(self.context, self.request).decide()
        where, snapshots, run_id = decision.where, decision.snapshots, decision.run_id
        restore_id, planned, claim = decision.restore_id, decision.planned, decision.claim
        result = RestoreResult(self.job, where.label, restore_id, "would restore", planned,
                               run_id=run_id, claim=claim)
        if run_id:
            self.log.info(f"instance {self.request.instance_id}: restoring the "
                          f"{len(snapshots)} volume(s) of run {run_id} "
                          f"({planned[0].snapshot.start_time.isoformat()})")
        archived = [p.snapshot for p in planned if p.snapshot.storage_tier == ARCHIVE]
        if archived and not self.from_archive(where, archived, result):
            return result
        if self.request.dry_run:
            self.describe_dry_run(result)
            return result
        clients = Clients(main=where.client, create=ec2_client(
            where.session, where.region, self.settings, attempts=1))
        maker = VolumeMaker(clients, SendOnce(max_attempts(self.settings), self.stop,
                                              self.log), self.log)
        for item in planned:
            if self.stop.is_set():
                return self.interrupted(result)
            result.volumes[item.snapshot.snapshot_id] = maker.make(item.spec, restore_id)
        result.status = "restored"
        if self.request.wait:
            try:
                ready = maker.wait_available([v.volume_id for v in result.volumes.values()],
                                             self.request.wait_timeout.total_seconds(),
                                             self.stop)
            except JobError:
                if self.stop.is_set():
                    return self.interrupted(result)
                raise
            result.volumes = {snap: ready[v.volume_id] for snap, v in result.volumes.items()}
            if self.request.attach:
                for item in planned:
                    if self.stop.is_set():
                        return self.interrupted(result)
                    volume = result.volumes[item.snapshot.snapshot_id]
                    result.attached[volume.volume_id] = maker.attach(
                        volume, self.request.attach, str(item.device))
        bound = [replace(item.claim, volume_id=result.volumes[
            item.snapshot.snapshot_id].volume_id) for item in planned if item.claim is not None]
        if bound:
            result.claims = bound
            result.claim = bound[0] if claim is not None else None
            result.manifest = render(*bound)
        return result

    def hand_over(self) -> RestoreResult:
        """The claim's snapshot as a VolumeSnapshotContent, a VolumeSnapshot and a claim
        whose dataSource it is: no volume is made; the EBS CSI driver makes it where the
        claim's pod is scheduled. An archived snapshot is brought back first."""
        planner = Planner(self.context, self.request)
        where = planner.where()
        snapshots, run_id = planner.choose(where)
        handoffs = []
        for snapshot in snapshots:
            claim = snapshot.claim or ("", "")
            namespace = self.request.namespace or claim[0]
            name = (self.request.claim_name if self.request.claims_namespace is None
                    else None) or claim[1]
            handoffs.append(SnapshotHandoff(
                job=self.job, snapshot_id=snapshot.snapshot_id,
                start_time=snapshot.start_time.astimezone(UTC).isoformat(),
                size_gib=max(snapshot.size_gib, self.request.size_gib or 0),
                namespace=namespace, claim_name=name, source_claim=f"{claim[0]}/{claim[1]}"))
        restore_id = self.request.restore_id or choosing.restore_id(
            self.job, [s.snapshot_id for s in snapshots], "volumesnapshots",
            ",".join(f"{h.namespace}/{h.claim_name}" for h in handoffs), where.label)
        result = RestoreResult(self.job, where.label, restore_id,
                               "would hand over" if self.request.dry_run else "handed over",
                               [], run_id=run_id)
        archived = [s for s in snapshots if s.storage_tier == ARCHIVE]
        if archived and not self.from_archive(where, archived, result):
            return result
        result.handoffs = handoffs
        result.manifest = render_snapshots(result.handoffs, self.request.storage_class,
                                           with_claims=True)
        for handoff in result.handoffs if self.request.dry_run else []:
            self.log.info(f"dry run: would write a VolumeSnapshotContent, a VolumeSnapshot "
                          f"and the claim {handoff.namespace}/{handoff.claim_name} restoring "
                          f"from {handoff.snapshot_id} to {self.request.manifest}")
        return result

    def interrupted(self, result: RestoreResult) -> RestoreResult:
        """A signal came: nothing more is started; what was made is reported, and the same
        command run again goes on from there (it finds its volumes by the restore id)."""
        result.status = "interrupted"
        result.next_step = ("run the same command again: it uses the volumes this restore "
                            "made and makes only what is missing")
        self.log.warning(f"restore {result.restore_id} interrupted: {len(result.volumes)} of "
                         f"{len(result.planned)} volume(s) made, nothing more started")
        return result

    def from_archive(self, where: Where, archived: list[SnapshotInfo],
                     result: RestoreResult) -> bool:
        """Whether the archived snapshots can be restored from now; if not, their temporary
        restore is started (or still running) and the result says to come back later."""
        waiting = []
        for snapshot in archived:
            answer = where.client.describe_snapshot_tier_status(
                Filters=[{"Name": "snapshot-id", "Values": [snapshot.snapshot_id]}])
            status: Mapping[str, Any] = next(iter(answer.get("SnapshotTierStatuses", [])), {})
            state = str(status.get("LastTieringOperationStatus") or "")
            expiry = status.get("RestoreExpiryTime")
            if state in RESTORED_STATES and (expiry is None or expiry > self.now):
                continue
            waiting.append((snapshot, "restore" in state and state.endswith("in-progress")))
        if not waiting:
            return True
        for snapshot, in_progress in waiting:
            if in_progress:
                self.log.info(f"snapshot {snapshot.snapshot_id} is still restoring from the "
                              "archive tier")
            elif self.request.dry_run:
                self.log.info(f"dry run: would restore snapshot {snapshot.snapshot_id} from "
                              f"the archive tier for {self.request.archive_days} day(s) first")
            elif self.stop.is_set():
                continue
            else:
                where.client.restore_snapshot_tier(
                    SnapshotId=snapshot.snapshot_id,
                    TemporaryRestoreDays=self.request.archive_days)
                self.log.info(f"restoring snapshot {snapshot.snapshot_id} from the archive "
                              f"tier for {self.request.archive_days} day(s)")
        if self.request.dry_run:
            result.status = "would restore"
            result.next_step = ("the snapshot is archived: the restore would first bring it "
                                "back (RestoreSnapshotTier) and ask to be run again")
            return False
        started = any(not in_progress for _, in_progress in waiting)
        result.status = "archive restore started" if started else "still restoring"
        result.next_step = ("EC2 takes up to 72 hours to bring an archived snapshot back: run "
                            "the same command again later; it makes the volume once it can")
        return False

    def describe_dry_run(self, result: RestoreResult) -> None:
        for item in result.planned:
            spec = item.spec
            self.log.info(f"dry run: would create a volume from {spec.snapshot_id} in "
                          f"{spec.zone} ({spec.volume_type}, {spec.size_gib} GiB"
                          + (f", {spec.iops} IOPS" if spec.iops else "")
                          + (f", {spec.throughput} MiB/s" if spec.throughput else "") + ")"
                          + (f", then attach it to {self.request.attach} as {item.device}"
                             if self.request.attach else ""))
        for item in result.planned:
            if item.claim is not None:
                self.log.info(f"dry run: would write the PersistentVolume and claim "
                              f"{item.claim.namespace}/{item.claim.claim_name} (from "
                              f"{item.snapshot.snapshot_id}) to {self.request.manifest}")


def restore(context: JobContext, request: RestoreRequest) -> RestoreResult:
    """Refusal for what the user must change (nothing was changed), JobError or
    AwsError when AWS refused or the wait ran out."""
    try:
        return Restore(context, request).run()
    except AwsError as exc:
        raise JobError(f"restore failed: {exc}") from None
