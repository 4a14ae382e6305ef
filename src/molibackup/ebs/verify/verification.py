"""Proving backups restore: read each volume's newest completed snapshot back, or restore it
into a volume that is then deleted, and leave the evidence on the snapshot.

State lives in the snapshots' tags only: `molibackup:verified-at` (UTC) and
`molibackup:verified` (method and outcome). A verification volume is deleted on every path:
after success, after a failure, on SIGTERM/SIGINT before the process exits, and, should the
process be killed, by the next run (once it is older than the timeout).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from molibackup.aws.clients import client as aws_client
from molibackup.aws.clients import ec2_client, max_attempts
from molibackup.ebs.blocks import BlockError, BlockReader, list_blocks
from molibackup.ebs.catalog import SnapshotInfo, describe_snapshot, job_snapshots
from molibackup.ebs.job import Clients, JobContext
from molibackup.ebs.options import VerifyOptions
from molibackup.ebs.recovery import SendOnce
from molibackup.ebs.selection import Selector
from molibackup.ebs.tags import (
    RESTORE_ID_TAG,
    RESTORED_FROM_TAG,
    VERIFICATION_OF_TAG,
    VERIFIED_AT_TAG,
    VERIFIED_TAG,
    VERIFY_JOB_TAG,
    VERIFY_STARTED_TAG,
    is_owned_by,
    timestamp,
    verified_at,
)
from molibackup.ebs.verify.content import identify
from molibackup.ebs.volumes import VolumeMaker, VolumeSpec
from molibackup.errors import AwsError, JobError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


FIRST_BYTES = 128 * 1024  # enough for every probe's superblock (btrfs: 64 KiB + 0x300)
READERS = 8  # concurrent GetSnapshotBlock calls per snapshot


@dataclass(frozen=True)
class VerifyRequest:
    method: str | None = None  # overrides the job's verify.method
    sample: int | None = None  # overrides verify.sample
    snapshot_id: str | None = None  # only this snapshot
    dry_run: bool = False


@dataclass
class Verification:
    volume_id: str
    volume_name: str
    snapshot_id: str | None
    method: str
    ok: bool = False
    content: str = ""
    checked: int = 0  # random blocks checked
    asked: int = 0  # random blocks asked for
    written: int = 0  # written blocks of the snapshot
    read: int = 0  # blocks read and checked, the first ones included
    seconds: float = 0.0
    detail: str = ""
    dry_run: bool = False

    def evidence(self) -> str:
        if self.method == "blocks":
            return f"blocks {self.content} {self.checked}/{self.asked}"
        return f"volume available in {self.seconds:.0f}s"


@dataclass(frozen=True)
class Candidate:
    volume_id: str
    volume_name: str
    snapshot: SnapshotInfo | None  # the newest completed one
    last_verified: datetime | None  # of any of the volume's snapshots


@dataclass
class JobVerification:
    job: str
    region: str
    verifications: list[Verification] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # every selected volume
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(v.ok or v.dry_run for v in self.verifications)


def candidates(volumes: Sequence[tuple[str, str]], snapshots: Sequence[SnapshotInfo]
               ) -> list[Candidate]:
    """Each selected volume, its newest completed snapshot and when it was last verified."""
    found = []
    for volume_id, name in volumes:
        own = [s for s in snapshots if s.volume_id == volume_id]
        completed = [s for s in own if s.completed]
        newest = max(completed, key=lambda s: (s.start_time, s.snapshot_id), default=None)
        verified = [t for s in own if (t := verified_at(s.tags)) is not None]
        found.append(Candidate(volume_id, name, newest, max(verified, default=None)))
    return found


def due(found: Sequence[Candidate], options: VerifyOptions, sample: int | None,
        now: datetime) -> list[Candidate]:
    """Those to verify now: never verified first, then those verified longest ago, skipping
    those verified within `every`; at most `sample` of them."""
    oldest_first = sorted(found, key=lambda c: (
        c.last_verified is not None, c.last_verified or now, c.volume_id))
    wanted = [c for c in oldest_first if options.every is None or c.last_verified is None
              or now - c.last_verified >= options.every]
    return wanted[:sample] if sample is not None else wanted


class Verifier:
    def __init__(self, context: JobContext, request: VerifyRequest) -> None:
        self.context = context
        self.options = context.job.options.verify
        self.job = context.job.name
        self.settings = settings = context.settings
        self.log = context.log
        self.now = context.now
        self.stop = context.stop
        self.request = request
        self.method = request.method or self.options.method
        self.session = context.job.session()
        region = context.job.region
        self.ec2: EC2Client = ec2_client(self.session, region, settings)
        self.ebs: Any = aws_client(self.session, "ebs", region, settings)
        self.in_flight: dict[str, str] = {}  # verification volume -> snapshot, until deleted
        self._lock = threading.Lock()

    # --- which --------------------------------------------------------------------------

    def choose(self, result: JobVerification) -> list[Candidate]:
        snapshots = job_snapshots(self.ec2, self.job)
        if self.request.snapshot_id is not None:
            return [self.named(self.request.snapshot_id)]
        volumes = Selector(self.context.job.options, self.ec2, self.log,
                           job_name=self.job).select(
            self.context.job.instance_id())
        result.candidates = candidates([(v.volume_id, v.name) for v in volumes], snapshots)
        return due(result.candidates, self.options, self.request.sample or self.options.sample,
                   self.now)

    def named(self, snapshot_id: str) -> Candidate:
        found = describe_snapshot(self.ec2, snapshot_id)
        if found is None or not is_owned_by(found.tags, self.job):
            raise JobError(f"snapshot {snapshot_id} is not a snapshot of job {self.job}"
                           + (" (no such snapshot)" if found is None else ""))
        return Candidate(found.volume_id, found.volume_id, found, verified_at(found.tags))

    # --- the run ------------------------------------------------------------------------

    def run(self) -> JobVerification:
        result = JobVerification(self.job, self.context.job.options.aws_region)
        if self.method == "volume":
            self.delete_leftovers()
        for candidate in self.choose(result):
            if self.stop.is_set():
                break
            result.verifications.append(self.verify(candidate))
        return result

    def verify(self, candidate: Candidate) -> Verification:
        outcome = Verification(candidate.volume_id, candidate.volume_name,
                               candidate.snapshot.snapshot_id if candidate.snapshot else None,
                               self.method, dry_run=self.request.dry_run)
        snapshot = candidate.snapshot
        if snapshot is None:
            outcome.detail = "no completed snapshot of the job to verify"
            self.log.error(f"volume {candidate.volume_id}: {outcome.detail}")
            return outcome
        if self.request.dry_run:
            what = ("read its first blocks and " f"{self.options.blocks} random written blocks"
                    if self.method == "blocks" else "restore it into a volume, then delete it")
            outcome.detail = f"dry run: would {what}"
            self.log.info(f"dry run: would verify snapshot {snapshot.snapshot_id} of volume "
                          f"{candidate.volume_id}: {what}")
            return outcome
        started = time.monotonic()
        try:
            if self.method == "blocks":
                self.by_blocks(snapshot, outcome)
            else:
                self.by_volume(snapshot, outcome)
        except (BlockError, JobError, AwsError) as exc:
            outcome.ok, outcome.detail = False, str(exc)
        if self.method == "blocks":
            outcome.seconds = time.monotonic() - started
        if outcome.ok:
            self.record(snapshot, outcome)
        log = self.log.info if outcome.ok else self.log.error
        log(f"volume {candidate.volume_id} ({candidate.volume_name}): snapshot "
            f"{snapshot.snapshot_id} {'verified' if outcome.ok else 'FAILED verification'} "
            f"({self.method}): {outcome.detail or outcome.evidence()}")
        return outcome

    def by_blocks(self, snapshot: SnapshotInfo, outcome: Verification) -> None:
        blocks = list_blocks(self.ebs, snapshot.snapshot_id)
        outcome.written = len(blocks.tokens)
        if not blocks.tokens or blocks.block_size <= 0:
            raise BlockError("the snapshot has no written blocks: there is nothing to restore")
        reader = BlockReader(self.ebs, snapshot.snapshot_id, blocks)
        first = range(0, -(-FIRST_BYTES // blocks.block_size))
        with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="blocks") as pool:
            list(pool.map(reader.block, [i for i in first if i in blocks.tokens]))
            content = identify(reader.read)
            remaining = sorted(set(blocks.tokens) - set(reader.read_blocks))
            sample = random.sample(remaining, min(self.options.blocks, len(remaining)))
            outcome.asked = len(sample)
            list(pool.map(reader.block, sample))
        outcome.checked = len(sample)
        outcome.content = content.describe()
        if self.options.require_filesystem and not content.known:
            raise BlockError(f"its first blocks hold no filesystem molibackup recognises "
                             f"({content.describe()}) and verify.require_filesystem is set")
        outcome.ok = True
        outcome.read = len(reader.read_blocks)
        outcome.detail = (f"{content.describe()}, {len(reader.read_blocks)} block(s) of "
                          f"{blocks.block_size // 1024} KiB read and checked of "
                          f"{outcome.written} written")

    # --- the volume method --------------------------------------------------------------

    def maker(self) -> VolumeMaker:
        clients = Clients(main=self.ec2, create=ec2_client(
            self.session, self.context.job.options.aws_region, self.settings, attempts=1))
        return VolumeMaker(clients, SendOnce(max_attempts(self.settings), self.stop, self.log),
                           self.log)

    def by_volume(self, snapshot: SnapshotInfo, outcome: Verification) -> None:
        shape = snapshot.shape
        zone = self.options.availability_zone or (shape.zone if shape else None)
        if zone is None:
            raise JobError(f"snapshot {snapshot.snapshot_id} records no availability zone: set "
                           "verify.availability_zone")
        run = f"verify-{self.now.strftime('%Y%m%dT%H%M%SZ')}"
        spec = VolumeSpec(snapshot_id=snapshot.snapshot_id, zone=zone,
                          volume_type="gp3", size_gib=snapshot.size_gib, iops=None,
                          throughput=None, kms_key_id=None, tags={
                              "Name": f"molibackup-verify-{snapshot.snapshot_id}",
                              VERIFICATION_OF_TAG: snapshot.snapshot_id,
                              VERIFY_JOB_TAG: self.job,
                              VERIFY_STARTED_TAG: timestamp(self.now),
                              # how VolumeMaker finds a volume whose answer was lost
                              RESTORE_ID_TAG: run, RESTORED_FROM_TAG: snapshot.snapshot_id})
        maker = self.maker()
        started = time.monotonic()
        made = maker.make(spec, run)
        with self._lock:
            self.in_flight[made.volume_id] = snapshot.snapshot_id
        try:
            maker.wait_available([made.volume_id], self.options.timeout.total_seconds(),
                                 self.stop)
            outcome.seconds = time.monotonic() - started
            outcome.ok = True
            outcome.detail = (f"volume {made.volume_id} available in {outcome.seconds:.1f} s "
                              f"in {zone}")
        finally:
            self.delete_volume(made.volume_id, outcome)

    def delete_volume(self, volume_id: str, outcome: Verification | None = None,
                      client: EC2Client | None = None) -> None:
        try:
            (client or self.ec2).delete_volume(VolumeId=volume_id)
            self.log.info(f"deleted verification volume {volume_id}")
        except AwsError as exc:
            if exc.code != "InvalidVolume.NotFound":
                message = (f"verification volume {volume_id} could not be deleted: {exc}; the "
                           "next verify run deletes it")
                self.log.error(message)
                if outcome is not None:
                    outcome.ok, outcome.detail = False, message
                return
        with self._lock:
            self.in_flight.pop(volume_id, None)

    def delete_in_flight(self) -> None:
        """Before the process exits (a second signal, or the grace time over): no
        verification volume stays. One bounded DeleteVolume each: a single attempt, with
        short timeouts, whatever the settings; one that fails is the next run's to delete."""
        if not self.in_flight:
            return
        quick = dataclasses.replace(self.settings, connect_timeout=min(
            5, self.settings.connect_timeout), read_timeout=min(10, self.settings.read_timeout),
            timeout_attempts=1)
        client = ec2_client(self.session, self.context.job.region, quick, attempts=1)
        for volume_id in list(self.in_flight):
            self.delete_volume(volume_id, client=client)

    def delete_leftovers(self) -> None:
        """This job's verification volumes that a killed run left, older than the timeout;
        never any other volume."""
        for raw in self.ec2.describe_volumes(Filters=[
                {"Name": f"tag:{VERIFY_JOB_TAG}", "Values": [self.job]},
                {"Name": "tag-key", "Values": [VERIFICATION_OF_TAG]}])["Volumes"]:
            tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
            started = verified_at({VERIFIED_AT_TAG: tags.get(VERIFY_STARTED_TAG, "")})
            if (tags.get(VERIFY_JOB_TAG) != self.job or VERIFICATION_OF_TAG not in tags
                    or started is None or raw.get("Attachments")):
                continue
            if self.now - started >= self.options.timeout:
                left = (f"verification volume {raw['VolumeId']} of snapshot "
                        f"{tags[VERIFICATION_OF_TAG]} was left by an earlier run (started "
                        f"{tags[VERIFY_STARTED_TAG]})")
                if self.request.dry_run:
                    self.log.info(f"dry run: would delete {left}")
                    continue
                self.log.warning(f"{left}: deleting it")
                self.delete_volume(str(raw["VolumeId"]))

    # --- evidence -----------------------------------------------------------------------

    def record(self, snapshot: SnapshotInfo, outcome: Verification) -> None:
        try:
            self.ec2.create_tags(Resources=[snapshot.snapshot_id], Tags=[
                {"Key": VERIFIED_AT_TAG, "Value": timestamp(datetime.now(UTC))},
                {"Key": VERIFIED_TAG, "Value": outcome.evidence()}])
        except AwsError as exc:
            outcome.ok = False
            outcome.detail = f"verified, but the evidence could not be tagged: {exc}"


def verify_job(context: JobContext, request: VerifyRequest, *,
               on_start: Callable[[Verifier], None] = lambda _: None) -> JobVerification:
    """JobError/AwsError when the job could not be verified at all."""
    verifier = Verifier(context, request)
    on_start(verifier)
    try:
        return verifier.run()
    finally:
        verifier.delete_in_flight()
